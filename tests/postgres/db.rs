//! A PostgreSQL database of its own for each test, created from `REINS_TEST_DATABASE_URL` and
//! dropped when the test ends (pass or fail).

use sqlx::{Connection, Executor, PgConnection};

/// The variable naming the server the suite runs against.
pub const URL_VAR: &str = "REINS_TEST_DATABASE_URL";

pub struct TestDb {
    /// The URL of this test's database.
    pub url: String,
    admin: String,
    name: String,
}

impl TestDb {
    /// A new, empty database; None (after saying so) when the suite is not configured. In CI
    /// (`CI` set) a missing variable fails the test instead: the suite must never pass unrun.
    pub async fn create() -> Option<Self> {
        let Ok(base) = std::env::var(URL_VAR) else {
            if std::env::var_os("CI").is_some() {
                panic!("{URL_VAR} is not set in CI: the PostgreSQL suite cannot run");
            }
            eprintln!(
                "DID NOT RUN: set {URL_VAR}=postgres://postgres@127.0.0.1:5432 to run the PostgreSQL suite"
            );
            return None;
        };
        let mut admin = url::Url::parse(&base).expect("REINS_TEST_DATABASE_URL is a URL");
        admin.set_path("/postgres");
        let name = format!("reins_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(admin.as_str())
            .await
            .expect("the test PostgreSQL server answers");
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("create the test database");
        let mut url = admin.clone();
        url.set_path(&format!("/{name}"));
        Some(Self {
            url: url.to_string(),
            admin: admin.to_string(),
            name,
        })
    }

    /// A connection to this test's database, for checks made beside Reins.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // A runtime of its own: drop runs inside the test's runtime, which cannot be blocked on.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin).await.ok()?;
                conn.execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await
                .ok()
            })
        })
        .join();
    }
}

/// A test's own database, or the test returns early having said it did not run.
#[macro_export]
macro_rules! postgres_or_skip {
    () => {
        match $crate::db::TestDb::create().await {
            Some(db) => db,
            None => return,
        }
    };
}
