"""Jobs: publishing and collecting them, their records, verdicts, idempotency, the
audit trail and live output, all in JetStream."""
