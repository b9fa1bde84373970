-- The operational schema of the marketplace: tables, keys, updated_at triggers, change log.
-- Foreign keys, indexes and change-log triggers are created after the bulk history load
-- (constraints.sql), as a real migration of existing data would do.

create schema if not exists marketplace;
create schema if not exists cdc;
create schema if not exists sim;

create table marketplace.customers (
    customer_id   bigint primary key,
    email         text,
    first_name    text,
    last_name     text,
    birth_date    date,
    phone         text,
    street        text,
    city          text,
    state         text,
    zip           text,
    registered_at timestamptz not null,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);

create table marketplace.products (
    product_id bigint primary key,
    seller_id  bigint not null,
    name       text not null,
    category   text not null,
    price      numeric(12, 2) not null,
    status     text not null default 'active',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create table marketplace.orders (
    order_id       bigint primary key,
    customer_id    bigint not null,
    status         text not null,
    ordered_at     timestamptz not null,
    shipping_state text,
    total_amount   numeric(14, 2) not null,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now()
);

-- product_id is a soft reference: the catalogue purges products independently of old orders,
-- so an order item may point at a product that no longer exists (the warehouse flags it).
create table marketplace.order_items (
    order_item_id bigint primary key,
    order_id      bigint not null,
    product_id    bigint not null,
    quantity      integer not null,
    unit_price    numeric(12, 2) not null,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);

create table marketplace.payments (
    payment_id bigint primary key,
    order_id   bigint not null,
    amount     numeric(14, 2) not null,
    method     text not null,
    status     text not null,
    paid_at    timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create table marketplace.bids (
    bid_id     bigint primary key,
    product_id bigint not null,
    bidder_id  bigint not null,
    amount     numeric(12, 2) not null,
    placed_at  timestamptz not null,
    status     text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

-- The change log: one row per inserted, updated or deleted row, with its full image.
-- txid is the writing transaction (xid8): a reader that stops below the oldest running
-- transaction (pg_snapshot_xmin) never skips a change that commits later.
create table cdc.change_log (
    change_id  bigint generated always as identity primary key,
    txid       xid8 not null default pg_current_xact_id(),
    changed_at timestamptz not null default clock_timestamp(),
    operation  char(1) not null check (operation in ('I', 'U', 'D')),
    table_name text not null,
    row_key    bigint not null,
    row_data   jsonb not null
);
create index change_log_table_txid_idx on cdc.change_log (table_name, txid);

-- updated_at is kept by the database unless the application sets it (a skewed clock).
create function marketplace.touch_updated_at() returns trigger
language plpgsql as $$
begin
    if tg_op = 'INSERT' then
        new.created_at := coalesce(new.created_at, now());
        new.updated_at := coalesce(new.updated_at, now());
    elsif new.updated_at is not distinct from old.updated_at then
        new.updated_at := now();
    end if;
    return new;
end
$$;

create function cdc.record_change() returns trigger
language plpgsql as $$
declare
    image jsonb;
begin
    image := to_jsonb(case when tg_op = 'DELETE' then old else new end);
    insert into cdc.change_log (operation, table_name, row_key, row_data)
    values (left(tg_op, 1), tg_table_name, (image ->> tg_argv[0])::bigint, image);
    return null;
end
$$;

-- Simulator state: the seed, scale and simulated clock, so `advance` continues the story.
create table sim.state (
    id          boolean primary key default true check (id),
    seed        bigint not null,
    scale       numeric not null,
    dirty_rate  numeric not null,
    sim_day     date not null,
    days_run    integer not null default 0
);

-- A deterministic pseudo-random number in [0, 1) for (seed, id, salt).
create function sim.rnd(seed bigint, id bigint, salt integer) returns double precision
language sql immutable parallel safe as $$
    select (hashint8extended(id, seed * 1000 + salt) & 9007199254740991)::double precision
        / 9007199254740992.0
$$;

create function sim.pick(arr text[], r double precision) returns text
language sql immutable parallel safe as $$
    select arr[1 + floor(r * array_length(arr, 1))::int]
$$;
