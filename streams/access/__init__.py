"""Who may do what, and the record of it: roles and rules (guard), tokens, sign-in limits, users and
the audit log."""
