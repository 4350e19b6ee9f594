"""consent-svc: a consent ledger, real-time consent checks, regional policy and audit."""
