-- An approval binds the user its request was made for, not only the agent: one opened by an agent
-- acting for alice must not serve the same agent acting for mallory. Approvals opened before this
-- column existed take the user of the decision that opened them.
ALTER TABLE approvals ADD COLUMN on_behalf_of TEXT;

UPDATE approvals
   SET on_behalf_of = (SELECT d.on_behalf_of FROM decisions d WHERE d.id = approvals.evaluation_id);
