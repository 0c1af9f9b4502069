//! The commands that hand out evidence from a data dir, with no server: audit packs (export and
//! offline verification) and incident reports. They read the database read-only, so the server
//! may keep running.

use super::{ExportArgs, IncidentReportArgs, ReportFormat, ledger_signer, write_stdout};
use crate::config::Config;
use crate::policy::PolicyPack;

/// The compliance view of a data dir, read-only: the policies are the ones the ledger last
/// recorded loading, from their stored texts (the configured folder only if those are missing).
async fn offline_sources(config: &Config) -> anyhow::Result<crate::compliance::Sources> {
    use crate::events::Event;
    use crate::registry::{EntityTypes, Snapshot};
    let store = crate::store::Store::open_read_only(&config.database_url()).await?;
    let types = EntityTypes::new()?;
    let snapshot = Snapshot::load(&store, &types).await?;
    // The default store's pack in force: its active version, else the last one a start loaded
    // for it (other stores and the control plane record their loads too).
    let mut digest = store
        .active_policy_version(crate::ids::DEFAULT_STORE)
        .await?
        .map(|v| v.digest);
    if digest.is_none() {
        for row in store
            .entries_of_kinds(&["policy_loaded"])
            .await?
            .iter()
            .rev()
        {
            let entry: crate::events::Entry = serde_json::from_slice(&row.entry)?;
            if let Event::PolicyLoaded(p) = entry.event
                && p.store.is_none()
            {
                digest = Some(p.policy_digest);
                break;
            }
        }
    }
    let mut pack = None;
    if let Some(digest) = digest
        && let Some(texts) = store.policy_text(&digest).await?
    {
        let files: Vec<(String, String)> = serde_json::from_str(&texts.files)?;
        pack = Some(PolicyPack::from_sources(
            "schema.cedarschema",
            &texts.schema_text,
            files,
        )?);
    }
    let pack = match pack {
        Some(p) => p,
        None => PolicyPack::load(&config.policy_dir, &config.schema_file)?,
    };
    Ok(crate::compliance::Sources {
        ledger_size: store.ledger_size().await?,
        store,
        snapshot: std::sync::Arc::new(snapshot),
        types,
        pack: std::sync::Arc::new(pack),
        config: config.compliance.clone(),
        signer: std::sync::Arc::new(ledger_signer(config)?),
    })
}

pub(super) async fn incident_report(
    config: &Config,
    args: IncidentReportArgs,
) -> anyhow::Result<()> {
    use crate::compliance::incident;
    let sources = offline_sources(config).await?;
    let report = incident::report(&sources, &args.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no incident {}", args.id))?;
    let text = match args.format {
        ReportFormat::Markdown => incident::markdown(&report)?,
        ReportFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => write_stdout(&text)?,
    }
    Ok(())
}

pub(super) async fn export_pack(config: &Config, args: ExportArgs) -> anyhow::Result<()> {
    use crate::compliance::pack::{ExportRequest, export, whole_history};
    use crate::compliance::parse_time;
    let whole = whole_history();
    let period = crate::compliance::Period {
        from: args
            .from
            .as_deref()
            .map(|f| parse_time("--from", f))
            .transpose()?
            .unwrap_or(whole.from),
        to: args
            .to
            .as_deref()
            .map(|t| parse_time("--to", t))
            .transpose()?
            .unwrap_or(whole.to),
    };
    if period.from >= period.to {
        anyhow::bail!("--from must be earlier than --to");
    }
    let sources = offline_sources(config).await?;
    let started = std::time::Instant::now();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {percent}% entries and proofs, eta {eta}",
        )?
        .progress_chars("=> "),
    );
    // Written next to the target and renamed, so a failed export leaves no half pack behind.
    let partial = args.output.with_extension("zip.partial");
    let file = std::fs::File::create(&partial)
        .map_err(|e| anyhow::anyhow!("{}: {e}", partial.display()))?;
    let result = export(
        &sources,
        &ExportRequest {
            agent: args.agent,
            period,
        },
        std::io::BufWriter::new(file),
        &|done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    )
    .await;
    bar.finish_and_clear();
    let (manifest, writer) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    };
    writer
        .into_inner()
        .map_err(|e| anyhow::anyhow!("{}: {e}", partial.display()))?
        .sync_all()?;
    std::fs::rename(&partial, &args.output)?;
    let bytes = std::fs::metadata(&args.output)?.len();
    if manifest.tree_size < sources.ledger_size {
        eprintln!(
            "note: the newest {} entries are not yet covered by a signed checkpoint and are not in \
             the pack (a running server signs one within a second; export again)",
            sources.ledger_size - manifest.tree_size
        );
    }
    println!(
        "wrote {}: {} entries (indices {}..{}), checkpoint of {} entries, {} files, {} bytes in {:.1}s",
        args.output.display(),
        manifest.entries,
        manifest.start,
        manifest.end,
        manifest.tree_size,
        manifest.files.len() + 2,
        bytes,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub(super) fn verify_pack(path: &std::path::Path, key: Option<String>) -> anyhow::Result<()> {
    let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    match crate::compliance::pack::verify(std::io::BufReader::new(file), key.as_deref()) {
        Ok(v) => {
            if !v.key_pinned {
                eprintln!(
                    "warning: checked against the pack's own verifier.key; pass --key to pin the ledger's key"
                );
            }
            println!(
                "ok: {} entries (indices {}..{}{}) included in a checkpoint of {} entries; {} files match the signed manifest",
                v.entries,
                v.start,
                v.end,
                v.agent.map(|a| format!(", agent {a}")).unwrap_or_default(),
                v.tree_size,
                v.files
            );
            Ok(())
        }
        Err(problems) => {
            for p in &problems {
                println!("FAIL {p}");
            }
            anyhow::bail!(
                "audit pack verification FAILED: {} problem(s) in {}",
                problems.len(),
                problems
                    .iter()
                    .map(|p| p.file.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}
