"""SQLite schema. Times are integer microseconds since the Unix epoch (UTC)."""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "initial schema: budgets, counters, reservations, ledger, rollups",
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        -- config_version changes with every budget or exchange-rate change, so
        -- each process knows when to reload its cached configuration.
        INSERT INTO meta (key, value) VALUES ('config_version', '0');

        CREATE TABLE fx_rates (
            source TEXT NOT NULL,
            target TEXT NOT NULL,
            effective_from INTEGER NOT NULL,
            rate TEXT NOT NULL,
            PRIMARY KEY (source, target, effective_from)
        ) WITHOUT ROWID;

        CREATE TABLE budgets (
            id TEXT PRIMARY KEY,
            tenant TEXT,
            spec TEXT NOT NULL
        );
        CREATE INDEX budgets_tenant ON budgets (tenant);

        CREATE TABLE counters (
            budget_id TEXT NOT NULL,
            member TEXT NOT NULL,
            bucket INTEGER NOT NULL,
            used INTEGER NOT NULL DEFAULT 0,
            reserved INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (budget_id, member, bucket)
        ) WITHOUT ROWID;

        -- Every request id seen: authorizations, and post-hoc records (born
        -- committed), so retries of either are recognised by primary key.
        CREATE TABLE reservations (
            request_id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            state TEXT NOT NULL,
            payload_hash TEXT NOT NULL,
            commit_hash TEXT,
            event_id INTEGER,
            subject TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            estimate TEXT NOT NULL,
            charges TEXT NOT NULL,
            authorized_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX reservations_held_expiry ON reservations (expires_at)
            WHERE state = 'held';

        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            request_id TEXT NOT NULL,
            status TEXT NOT NULL,
            tenant TEXT NOT NULL,
            user TEXT,
            key TEXT,
            agent TEXT,
            feature TEXT,
            subject TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cached_input_tokens INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL,
            reasoning_tokens INTEGER NOT NULL,
            input_audio_tokens INTEGER NOT NULL,
            output_audio_tokens INTEGER NOT NULL,
            audio_ms INTEGER NOT NULL,
            images INTEGER NOT NULL,
            requests INTEGER NOT NULL,
            credits INTEGER NOT NULL,
            cost_micros INTEGER,
            currency TEXT NOT NULL,
            price TEXT NOT NULL,
            price_source TEXT,
            reason TEXT,
            budget_id TEXT,
            payload_hash TEXT,
            occurred_at INTEGER NOT NULL,
            recorded_at INTEGER NOT NULL
        );
        CREATE INDEX events_tenant_time ON events (tenant, occurred_at);
        -- Calls priced by a fallback (unknown model, uncovered usage) are listed
        -- by `allotment prices unknown`, and the partial index costs ordinary events nothing.
        CREATE INDEX events_flagged ON events (price_source, id)
            WHERE price_source IN ('fallback', 'missing');

        CREATE TABLE rollups (
            tenant TEXT NOT NULL,
            hour INTEGER NOT NULL,
            user TEXT NOT NULL,
            key TEXT NOT NULL,
            agent TEXT NOT NULL,
            feature TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            status TEXT NOT NULL,
            calls INTEGER NOT NULL,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cached_input_tokens INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL,
            reasoning_tokens INTEGER NOT NULL,
            input_audio_tokens INTEGER NOT NULL,
            output_audio_tokens INTEGER NOT NULL,
            audio_ms INTEGER NOT NULL,
            images INTEGER NOT NULL,
            requests INTEGER NOT NULL,
            credits INTEGER NOT NULL,
            cost_micros INTEGER NOT NULL,
            PRIMARY KEY (tenant, hour, user, key, agent, feature, provider, model, status)
        ) WITHOUT ROWID;
        """,
    ),
    (
        2,
        "API keys for the HTTP service",
        """
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            tenant TEXT,
            role TEXT NOT NULL,
            name TEXT,
            secret_hash TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            revoked_at INTEGER,
            last_used_at INTEGER
        ) WITHOUT ROWID;
        CREATE INDEX api_keys_tenant ON api_keys (tenant);
        """,
    ),
    (
        3,
        "ledger archive: counter baseline, finished-reservation index",
        """
        -- What archived events (moved out of the ledger by `allotment ledger
        -- archive`) had added to each counter: rebuilds start from it.
        CREATE TABLE counter_baseline (
            budget_id TEXT NOT NULL,
            member TEXT NOT NULL,
            bucket INTEGER NOT NULL,
            used INTEGER NOT NULL,
            PRIMARY KEY (budget_id, member, bucket)
        ) WITHOUT ROWID;
        CREATE INDEX reservations_done_time ON reservations (authorized_at)
            WHERE state != 'held';
        """,
    ),
    (
        4,
        "request ids belong to their tenant: reservations keyed by (request_id, tenant)",
        """
        -- Two tenants may use the same request id; neither may see or block the
        -- other's. SQLite cannot change a primary key in place: copy the table.
        CREATE TABLE reservations_by_tenant (
            request_id TEXT NOT NULL,
            tenant TEXT NOT NULL,
            state TEXT NOT NULL,
            payload_hash TEXT NOT NULL,
            commit_hash TEXT,
            event_id INTEGER,
            subject TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            estimate TEXT NOT NULL,
            charges TEXT NOT NULL,
            authorized_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            PRIMARY KEY (request_id, tenant)
        ) WITHOUT ROWID;
        INSERT INTO reservations_by_tenant SELECT * FROM reservations;
        DROP TABLE reservations;
        ALTER TABLE reservations_by_tenant RENAME TO reservations;
        CREATE INDEX reservations_held_expiry ON reservations (expires_at)
            WHERE state = 'held';
        CREATE INDEX reservations_done_time ON reservations (authorized_at)
            WHERE state != 'held';
        """,
    ),
    (
        5,
        "ledger pages: events indexed in id order within a tenant (and a status)",
        """
        -- GET /v1/events reads a page of one tenant's ledger after a cursor, in id
        -- order: each index below ends in id after its equality columns, so every
        -- filter combination reads in index order and stops after a page, where
        -- (tenant, occurred_at) made it sort the tenant's whole ledger per page.
        -- occurred_at rides along so since/until are checked in the index.
        CREATE INDEX events_tenant_id ON events (tenant, id, occurred_at);
        CREATE INDEX events_tenant_status ON events (tenant, status, id, occurred_at);
        CREATE INDEX events_tenant_flagged ON events (tenant, price_source, id)
            WHERE price_source IN ('fallback', 'missing');
        -- Ordered by time, not id, it served no page without a sort: a planner
        -- that saw a narrow since/until chose it and sorted.
        DROP INDEX events_tenant_time;
        """,
    ),
    (
        6,
        "events keep a refused or released call's estimate apart from its usage",
        """
        -- A blocked or released event used nothing (system 3): its usage is zero and
        -- the estimate it asked for or held is kept here, as JSON.
        ALTER TABLE events ADD COLUMN estimate TEXT;
        """,
    ),
    (
        7,
        "budget ids scoped by tenant: budgets, counters and charges keyed by tenant#id",
        """
        -- Two tenants may each have a budget 'daily'. Where a budget is stored is its
        -- key: its id for a deployment-wide budget, 'tenant#id' for a tenant's (an
        -- id never holds '#'). Counters, their archived baseline and the charges of
        -- reservations name budgets by key, so they move first, while the budgets
        -- table still tells tenant budgets apart.
        UPDATE reservations SET charges = (
            SELECT json_group_array(json_array(
                CASE WHEN EXISTS (
                    SELECT 1 FROM budgets b
                    WHERE b.id = json_extract(c.value, '$[0]') AND b.tenant = reservations.tenant
                ) THEN reservations.tenant || '#' || json_extract(c.value, '$[0]')
                ELSE json_extract(c.value, '$[0]') END,
                json_extract(c.value, '$[1]'), json_extract(c.value, '$[2]'),
                json_extract(c.value, '$[3]')))
            FROM json_each(reservations.charges) AS c)
        WHERE charges != '[]'
            AND tenant IN (SELECT tenant FROM budgets WHERE tenant IS NOT NULL);

        ALTER TABLE counters RENAME COLUMN budget_id TO budget_key;
        ALTER TABLE counter_baseline RENAME COLUMN budget_id TO budget_key;
        UPDATE counters SET budget_key = (
            SELECT b.tenant || '#' || b.id FROM budgets b WHERE b.id = counters.budget_key)
        WHERE budget_key IN (SELECT id FROM budgets WHERE tenant IS NOT NULL);
        UPDATE counter_baseline SET budget_key = (
            SELECT b.tenant || '#' || b.id FROM budgets b
            WHERE b.id = counter_baseline.budget_key)
        WHERE budget_key IN (SELECT id FROM budgets WHERE tenant IS NOT NULL);

        CREATE TABLE budgets_by_key (
            key TEXT PRIMARY KEY,
            id TEXT NOT NULL,
            tenant TEXT,
            spec TEXT NOT NULL
        );
        INSERT INTO budgets_by_key (key, id, tenant, spec)
            SELECT CASE WHEN tenant IS NULL THEN id ELSE tenant || '#' || id END,
                   id, tenant, spec
            FROM budgets;
        DROP TABLE budgets;
        ALTER TABLE budgets_by_key RENAME TO budgets;
        CREATE INDEX budgets_tenant ON budgets (tenant);
        CREATE INDEX budgets_id ON budgets (id);
        UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)
            WHERE key = 'config_version';
        """,
    ),
    (
        8,
        "credit pools: grants, the credit ledger and auto top-ups",
        """
        -- A grant's consumption and a pool member's debt are ordinary counters
        -- (keys 'pool!grant' and 'pool!'); here are the grants' terms. A grant is
        -- never edited but voided (voided_at) or closed once its expiry or void
        -- entry is written.
        CREATE TABLE grants (
            pool TEXT NOT NULL,
            member TEXT NOT NULL,
            id TEXT NOT NULL,
            amount INTEGER NOT NULL,
            kind TEXT NOT NULL,
            priority INTEGER NOT NULL,
            effective_at INTEGER NOT NULL,
            expires_at INTEGER,
            created_at INTEGER NOT NULL,
            voided_at INTEGER,
            closed INTEGER NOT NULL DEFAULT 0,
            idempotency_key TEXT,
            metadata TEXT NOT NULL,
            PRIMARY KEY (pool, id)
        );  -- a rowid table: metadata may run to kilobytes
        -- A payment id adds one grant to a pool, however often it is retried.
        CREATE UNIQUE INDEX grants_idempotency ON grants (pool, idempotency_key)
            WHERE idempotency_key IS NOT NULL;
        CREATE INDEX grants_member ON grants (pool, member);

        -- Every movement of credit, with the member's balance after it.
        -- Never deleted, so rowids are never reused: no AUTOINCREMENT, whose
        -- sqlite_sequence row every hold would write again.
        CREATE TABLE credit_entries (
            id INTEGER PRIMARY KEY,
            pool TEXT NOT NULL,
            member TEXT NOT NULL,
            kind TEXT NOT NULL,
            amount INTEGER NOT NULL,
            balance INTEGER NOT NULL,
            at INTEGER NOT NULL,
            grant_id TEXT,
            request_id TEXT
        );
        CREATE INDEX credit_entries_member ON credit_entries (pool, member, id);

        -- Auto top-ups (allotment.core.topups): bought by a worker outside any
        -- transaction, moved on by the payment's outcome.
        CREATE TABLE topups (
            id TEXT PRIMARY KEY,
            pool TEXT NOT NULL,
            member TEXT NOT NULL,
            amount INTEGER NOT NULL,
            bucket INTEGER NOT NULL,
            state TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            attempts INTEGER NOT NULL,
            next_attempt_at INTEGER,
            claimed_until INTEGER,
            error TEXT,
            grant_id TEXT
        );
        -- A member's one pending top-up: of commits that cross the threshold
        -- together, one starts it.
        CREATE UNIQUE INDEX topups_pending ON topups (pool, member) WHERE state = 'pending';
        CREATE INDEX topups_member ON topups (pool, member, created_at);
        CREATE INDEX topups_due ON topups (state, next_attempt_at);
        """,
    ),
    (
        9,
        "plans: named templates of budgets, and the plan each member is assigned",
        """
        -- A plan is configuration, as budgets are: loaded with them into each process's
        -- cache, its spec (Plan.to_spec) kept as JSON under its key ('tenant#id', or
        -- its id when deployment-wide). Its budgets count in ordinary counters, the
        -- slot's ('tenant#~slot'), shared by the tenant's plans.
        CREATE TABLE plans (
            key TEXT PRIMARY KEY,
            id TEXT NOT NULL,
            tenant TEXT,
            spec TEXT NOT NULL
        );

        -- A member's plan, assigned server-side: read per call, never cached.
        -- epoch counts its 'reset' assignments (windowed plan budgets count per epoch).
        CREATE TABLE plan_assignments (
            tenant TEXT NOT NULL,
            member TEXT NOT NULL,
            plan TEXT NOT NULL,
            epoch INTEGER NOT NULL,
            usage TEXT NOT NULL,
            assigned_at INTEGER NOT NULL,
            PRIMARY KEY (tenant, member)
        ) WITHOUT ROWID;
        """,
    ),
    (
        10,
        "leases: a reservation's TTL, maximum duration and slots, and who holds each slot",
        """
        -- A heartbeat extends a reservation by its ttl (seconds); a lease, one that
        -- holds slots of concurrency budgets (or has a maximum duration), never past
        -- max_until (us).
        ALTER TABLE reservations ADD COLUMN ttl INTEGER;
        ALTER TABLE reservations ADD COLUMN max_until INTEGER;
        ALTER TABLE reservations ADD COLUMN slots INTEGER NOT NULL DEFAULT 0;

        -- One row per slot a lease holds, with its expiry: the counters say how
        -- many are taken, these rows which lease holds each and until when.
        CREATE TABLE lease_slots (
            budget_key TEXT NOT NULL,
            member TEXT NOT NULL,
            tenant TEXT NOT NULL,
            request_id TEXT NOT NULL,
            expires_at INTEGER NOT NULL,
            PRIMARY KEY (tenant, request_id, budget_key, member)
        ) WITHOUT ROWID;
        CREATE INDEX lease_slots_expiry ON lease_slots (budget_key, member, expires_at);
        """,
    ),
]
