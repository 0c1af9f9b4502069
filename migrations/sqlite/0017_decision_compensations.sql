-- A decision whose request named another in `compensates` (this action undoes that one). The
-- link is in the compensating decision's ledger entry; this table finds it from the other side.
CREATE TABLE decision_compensations (
    decision_id  TEXT PRIMARY KEY NOT NULL,
    compensates  TEXT NOT NULL
);
CREATE INDEX decision_compensations_by_target ON decision_compensations (compensates);
