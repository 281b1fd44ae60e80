"""Share and earn (docs/referrals.md): share links, bindings, the sharers' commission ledger, withdrawals."""
