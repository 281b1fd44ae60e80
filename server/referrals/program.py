"""A merchant's share-and-earn programme and commission rules in PostgreSQL: their one writer (audited)."""

from __future__ import annotations

from typing import Any

from server.access.tokens import Actor
from server.ledger.audit import AuditLog
from server.ledger.client import Connection, Database, Record
from server.referrals.rules import Program, Rate, public_rates

_SETTINGS = (
    "enabled",
    "levels",
    "binding",
    "binding_days",
    "refund_days",
    "self_purchase",
    "daily_cap",
    "min_withdrawal",
    "currency",
)
MERCHANT = "merchant"  # the scope of a merchant's default rates (scope id '')


class Programs:
    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    async def get(self, merchant_id: str, connection: Connection | None = None) -> Program:
        """The merchant's programme (the defaults, disabled, when it never set one)."""
        row = await (connection or self.db.pool).fetchrow(
            "SELECT * FROM referral_programs WHERE merchant_id = $1", merchant_id
        )
        return Program(merchant_id) if row is None else _program(row)

    async def rules(
        self, merchant_id: str, connection: Connection | None = None
    ) -> dict[tuple[str, str], dict[int, Rate]]:
        """Every rule of the merchant: (scope, id) -> rates per level; the default is (MERCHANT, '')."""
        rows = await (connection or self.db.pool).fetch(
            "SELECT scope, scope_id, level, rate_bp, fixed FROM commission_rules WHERE merchant_id = $1", merchant_id
        )
        rules: dict[tuple[str, str], dict[int, Rate]] = {}
        for row in rows:
            rules.setdefault((row["scope"], row["scope_id"]), {})[row["level"]] = Rate(row["rate_bp"], row["fixed"])
        return rules

    async def public(self, merchant_id: str) -> dict[str, Any]:
        program = await self.get(merchant_id)
        rules = await self.rules(merchant_id)
        return {
            **program.public(),
            "default": public_rates(rules.get((MERCHANT, ""), {})),
            "rules": [
                {"scope": scope, "id": scope_id, **public_rates(rates)}
                for (scope, scope_id), rates in sorted(rules.items())
                if scope != MERCHANT
            ],
        }

    async def save(self, actor: Actor, program: Program, default: dict[int, Rate] | None) -> dict[str, Any]:
        """Store the programme (and the default rates, when given); audited."""
        before = await self.public(program.merchant_id)
        async with self.audit.change(actor, "referrals.changed", program.merchant_id, before) as entry:
            async with self.db.pool.acquire() as connection, connection.transaction():
                values = [getattr(program, name) for name in _SETTINGS]
                await connection.execute(
                    f"INSERT INTO referral_programs (merchant_id, {', '.join(_SETTINGS)})"
                    f" VALUES ($1, {', '.join(f'${i + 2}' for i in range(len(_SETTINGS)))})"
                    " ON CONFLICT (merchant_id) DO UPDATE SET"
                    f" {', '.join(f'{name} = excluded.{name}' for name in _SETTINGS)}, updated_at = now()",
                    program.merchant_id,
                    *values,
                )
                if default is not None:
                    await _replace_rates(connection, program.merchant_id, MERCHANT, "", default)
            entry.after = after = await self.public(program.merchant_id)
        return after

    async def set_rule(self, actor: Actor, scope: str, scope_id: str, rates: dict[int, Rate]) -> dict[str, Any]:
        """A product's or sale's rates (replacing any before); audited."""
        merchant_id = actor.merchant_id
        before = public_rates((await self.rules(merchant_id)).get((scope, scope_id), {})) or None
        subject = f"{scope}:{scope_id}"
        async with (
            self.audit.change(actor, "referrals.rule_set", subject, before, public_rates(rates)),
            self.db.pool.acquire() as connection,
            connection.transaction(),
        ):
            await _replace_rates(connection, merchant_id, scope, scope_id, rates)
        return {"scope": scope, "id": scope_id, **public_rates(rates)}

    async def remove_rule(self, actor: Actor, scope: str, scope_id: str) -> bool:
        """Remove a product's or sale's rates (the default applies again); False when it had none."""
        before = (await self.rules(actor.merchant_id)).get((scope, scope_id))
        if before is None:
            return False
        async with self.audit.change(actor, "referrals.rule_removed", f"{scope}:{scope_id}", public_rates(before)):
            await self.db.pool.execute(
                "DELETE FROM commission_rules WHERE merchant_id = $1 AND scope = $2 AND scope_id = $3",
                actor.merchant_id,
                scope,
                scope_id,
            )
        return True


async def _replace_rates(
    connection: Connection, merchant_id: str, scope: str, scope_id: str, rates: dict[int, Rate]
) -> None:
    await connection.execute(
        "DELETE FROM commission_rules WHERE merchant_id = $1 AND scope = $2 AND scope_id = $3",
        merchant_id,
        scope,
        scope_id,
    )
    await connection.executemany(
        "INSERT INTO commission_rules (merchant_id, scope, scope_id, level, rate_bp, fixed)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        [(merchant_id, scope, scope_id, level, rate.rate_bp, rate.fixed) for level, rate in rates.items()],
    )


def _program(row: Record) -> Program:
    return Program(row["merchant_id"], **{name: row[name] for name in _SETTINGS}, saved=True)
