-- Issue 21: plans and their entitlements, each tenant's plan and payment
-- state (kept in step with Stripe by its webhooks), the Stripe events already
-- applied, and per-tenant usage counters.

SET LOCAL ROLE polybot_owner;

-- What a plan allows. Not tenant data: every tenant reads the same plans.
-- `worker_cpu`/`worker_memory` NULL means the launcher's configured default
-- size. `monthly_price` is what the operator charges (USD); a plan with a
-- price needs a paid subscription, and only such a tenant can lapse.
CREATE TABLE plans (
    id              text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{0,39}$'),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    strategies      text[] NOT NULL,
    live_allowed    boolean NOT NULL,
    venues          text[] NOT NULL,
    worker_cpu      integer CHECK (worker_cpu > 0),
    worker_memory   integer CHECK (worker_memory > 0),
    alert_channels  text[] NOT NULL,
    max_tokens      integer NOT NULL CHECK (max_tokens BETWEEN 1 AND 1000),
    monthly_price   numeric NOT NULL DEFAULT 0 CHECK (monthly_price >= 0),
    -- The Stripe price a Checkout session subscribes to.
    stripe_price_id text,
    -- Usage is reported to Stripe as meter events (worker-hours).
    metered         boolean NOT NULL DEFAULT false,
    CHECK ((worker_cpu IS NULL) = (worker_memory IS NULL))
);

INSERT INTO plans (id, name, strategies, live_allowed, venues, worker_cpu, worker_memory,
                   alert_channels, max_tokens, monthly_price, metered) VALUES
    ('free-paper', 'Free (paper trading)', '{complement_arb}', false, '{polymarket,kalshi}',
     256, 512, '{webhook}', 2, 0, false),
    ('pro', 'Pro', '{complement_arb,cross_venue_arb,crypto_15m,news_arb}', false,
     '{polymarket,kalshi,binance_us,coinbase,kraken,alpaca,newsapi,ibkr}',
     512, 1024, '{webhook,telegram}', 10, 49, false),
    ('live', 'Live', '{complement_arb,cross_venue_arb,crypto_15m,news_arb}', true,
     '{polymarket,kalshi,binance_us,coinbase,kraken,alpaca,newsapi,ibkr}',
     1024, 2048, '{webhook,telegram}', 20, 199, true);

-- A tenant's plan and payment. No row: the tenant has no plan (an
-- operator-run tenant; nothing is limited or billed). `payment_event_at` is
-- the `created` time of the Stripe event that set the payment state: an
-- older event arriving later does not overwrite it.
CREATE TABLE tenant_billing (
    tenant_id               uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    plan_id                 text NOT NULL REFERENCES plans (id),
    stripe_customer_id      text UNIQUE CHECK (length(stripe_customer_id) <= 255),
    stripe_subscription_id  text UNIQUE CHECK (length(stripe_subscription_id) <= 255),
    payment_state           text NOT NULL DEFAULT 'none'
                            CHECK (payment_state IN ('none', 'active', 'past_due', 'canceled')),
    payment_event_at        timestamptz,
    -- Since when payment has been missing (past_due or canceled).
    lapsed_since            timestamptz,
    -- Worker-hours reported to Stripe up to this time (metered plans).
    reported_until          timestamptz,
    updated_at              timestamptz NOT NULL DEFAULT now()
);
SELECT polybot.protect_tenant_table('tenant_billing');

-- API calls per tenant and day (orders and worker time are counted from
-- `trades` and `worker_availability`).
CREATE TABLE tenant_usage (
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    day        date NOT NULL,
    api_calls  bigint NOT NULL DEFAULT 0 CHECK (api_calls >= 0),
    PRIMARY KEY (tenant_id, day)
);
SELECT polybot.protect_tenant_table('tenant_usage');

-- Stripe events already applied (or deliberately ignored), by Stripe's
-- event id: a redelivery is acknowledged and changes nothing. Not tenant
-- data: an event is recorded before (and whether or not) a tenant is found.
CREATE TABLE stripe_events (
    id           text PRIMARY KEY CHECK (length(id) <= 255),
    kind         text NOT NULL CHECK (length(kind) <= 100),
    created      timestamptz NOT NULL,
    outcome      text NOT NULL CHECK (length(outcome) <= 300),
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stripe_events_received_idx ON stripe_events (received_at);

GRANT SELECT ON plans TO polybot_control;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_billing, tenant_usage TO polybot_control;
GRANT SELECT, INSERT ON stripe_events TO polybot_control;

RESET ROLE;
