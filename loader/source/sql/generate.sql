-- Set-based generators shared by `init` (the history) and `advance` (one day at a time).
-- Every value derives from sim.rnd(seed, id, salt): the same seed gives the same rows.

-- When a generated row was written: during `init` (sim.history = on) the history's rows were
-- written when their business event happened, so created_at/updated_at spread over the
-- years like a real database's; during `advance` they are written now.
create function sim.written_at(happened timestamptz) returns timestamptz
language sql stable as $$
    select case when current_setting('sim.history', true) = 'on'
                then least(happened, now()) else now() end
$$;

create function sim.refresh_pools() returns void
language plpgsql as $$
begin
    -- dense row numbers over the live rows, so a random pick is a hash join, not a lookup
    drop table if exists pool_customers, pool_products;
    create temp table pool_customers as
        select row_number() over (order by customer_id) as rn, customer_id, state
        from marketplace.customers;
    create temp table pool_products as
        select row_number() over (order by product_id) as rn, product_id, price
        from marketplace.products;
    create unique index on pool_customers (rn);
    create unique index on pool_products (rn);
    analyze pool_customers;
    analyze pool_products;
end
$$;

create function sim.gen_customers(first_id bigint, n bigint, t0 timestamptz, t1 timestamptz)
returns bigint language plpgsql as $$
declare
    s sim.state;
    firsts text[] := array['James','Mary','John','Patricia','Robert','Jennifer','Michael',
        'Linda','William','Elizabeth','David','Barbara','Richard','Susan','Joseph','Jessica',
        'Thomas','Sarah','Charles','Karen','Maria','Wei','Aisha','Carlos','Olga','Noah','Emma'];
    lasts text[] := array['Smith','Johnson','Williams','Brown','Jones','Garcia','Miller',
        'Davis','Rodriguez','Martinez','Hernandez','Lopez','Gonzalez','Wilson','Anderson',
        'Thomas','Taylor','Moore','Jackson','Martin','Lee','Chen','Okafor','Novak','Kim'];
    cities text[] := array['Springfield','Riverside','Franklin','Greenville','Bristol',
        'Clinton','Fairview','Salem','Madison','Georgetown','Arlington','Ashland'];
    streets text[] := array['Main','Oak','Pine','Maple','Cedar','Elm','Washington','Lake',
        'Hill','Park','View','Sunset'];
    domains text[] := array['example.com','mail.test','shop.example','inbox.test'];
    codes text[] := array(select code from sim.us_states where code <> 'DC' order by code);
begin
    select * into s from sim.state;
    insert into marketplace.customers (
        customer_id, email, first_name, last_name, birth_date, phone,
        street, city, state, zip, registered_at, created_at, updated_at
    )
    select
        id,
        lower(fn) || '.' || lower(ln) || id || '@' || sim.pick(domains, sim.rnd(s.seed, id, 3)),
        fn,
        ln,
        date '1945-01-01' + floor(sim.rnd(s.seed, id, 4) * 365.25 * 60)::int,
        '+1-' || lpad(floor(sim.rnd(s.seed, id, 5) * 1e10)::bigint::text, 10, '0'),
        (1 + floor(sim.rnd(s.seed, id, 6) * 9998))::int || ' '
            || sim.pick(streets, sim.rnd(s.seed, id, 7)) || ' St',
        sim.pick(cities, sim.rnd(s.seed, id, 8)),
        sim.pick(codes, sim.rnd(s.seed, id, 9)),
        lpad(floor(sim.rnd(s.seed, id, 10) * 99999)::int::text, 5, '0'),
        t0 + (t1 - t0) * sim.rnd(s.seed, id, 11),
        sim.written_at(t0 + (t1 - t0) * sim.rnd(s.seed, id, 11)),
        sim.written_at(t0 + (t1 - t0) * sim.rnd(s.seed, id, 11))
    from (
        select id,
            sim.pick(firsts, sim.rnd(s.seed, id, 1)) as fn,
            sim.pick(lasts, sim.rnd(s.seed, id, 2)) as ln
        from generate_series(first_id, first_id + n - 1) as id
    ) as g;
    perform sim.dirty_customers(first_id, first_id + n - 1);
    return n;
end
$$;

-- Dirty customers at the configured rate, one kind of dirt each.
create function sim.dirty_customers(lo bigint, hi bigint) returns void
language plpgsql as $$
declare
    s sim.state;
begin
    select * into s from sim.state;
    update marketplace.customers as c set
        email = case k when 0 then replace(c.email, '@', ' at ')
                       when 1 then replace(c.email, '.', ' ')
                       when 6 then coalesce(
                           (select d.email from marketplace.customers as d
                            where d.customer_id < c.customer_id
                            order by d.customer_id desc limit 1), c.email)
                       else c.email end,
        state = case k when 2 then lower(c.state)
                       when 3 then (select name from sim.us_states where code = c.state)
                       when 4 then '  ' || c.state || ' '
                       else c.state end,
        first_name = case k when 5 then '  ' || c.first_name || ' ' else c.first_name end,
        last_name = case k when 5 then c.last_name || '  ' else c.last_name end
    from (
        select customer_id, floor(sim.rnd(s.seed, customer_id, 91) * 7)::int as k
        from marketplace.customers
        where customer_id between lo and hi and sim.rnd(s.seed, customer_id, 90) < s.dirty_rate
    ) as d
    where c.customer_id = d.customer_id;
end
$$;

create function sim.gen_products(first_id bigint, n bigint, t0 timestamptz, t1 timestamptz)
returns bigint language plpgsql as $$
declare
    s sim.state;
    n_c bigint := (select count(*) from pool_customers);
    adjectives text[] := array['Vintage','Compact','Deluxe','Classic','Smart','Rugged',
        'Handmade','Eco','Portable','Premium','Mini','Pro'];
    nouns text[] := array['Lamp','Backpack','Camera','Guitar','Watch','Chair','Kettle',
        'Bicycle','Sneakers','Headphones','Novel','Puzzle','Jacket','Skillet'];
    categories text[] := array['home','fashion','electronics','music','sports','books','toys'];
begin
    select * into s from sim.state;
    insert into marketplace.products (product_id, seller_id, name, category, price, status,
                                      created_at, updated_at)
    select
        id,
        c.customer_id,
        sim.pick(adjectives, sim.rnd(s.seed, id, 21)) || ' '
            || sim.pick(nouns, sim.rnd(s.seed, id, 22)),
        sim.pick(categories, sim.rnd(s.seed, id, 23)),
        case when sim.rnd(s.seed, id, 92) < s.dirty_rate
            then -round((sim.rnd(s.seed, id, 24) * 20)::numeric, 2)  -- non-positive price
            else round((5 + power(sim.rnd(s.seed, id, 24), 2) * 995)::numeric, 2) end,
        sim.pick(array['active','active','active','active','inactive','sold_out'],
                 sim.rnd(s.seed, id, 25)),
        t0 + (t1 - t0) * sim.rnd(s.seed, id, 26),
        sim.written_at(t0 + (t1 - t0) * sim.rnd(s.seed, id, 26))
    from generate_series(first_id, first_id + n - 1) as id
    join pool_customers as c on c.rn = 1 + floor(sim.rnd(s.seed, id, 20) * n_c);
    return n;
end
$$;

-- Orders with their items and payments, ordered between t0 and t1; statuses and payments
-- are as of as_of, the simulated clock (t1, or later for orders that arrive late).
create function sim.gen_orders(
    first_order_id bigint, n bigint, t0 timestamptz, t1 timestamptz, as_of timestamptz
) returns bigint language plpgsql as $$
declare
    s sim.state;
    n_c bigint := (select count(*) from pool_customers);
    n_p bigint := (select count(*) from pool_products);
    max_p bigint := (select coalesce(max(product_id), 0) from marketplace.products);
    first_item bigint := (select coalesce(max(order_item_id), 0) + 1
                          from marketplace.order_items);
begin
    select * into s from sim.state;
    drop table if exists new_orders, new_items;
    create temp table new_orders as
    select
        id as order_id,
        c.customer_id,
        c.state as shipping_state,
        t0 + (t1 - t0) * sim.rnd(s.seed, id, 31) as ordered_at,
        sim.rnd(s.seed, id, 32) as r_status
    from generate_series(first_order_id, first_order_id + n - 1) as id
    join pool_customers as c on c.rn = 1 + floor(sim.rnd(s.seed, id, 30) * n_c);

    create temp table new_items as
    select
        first_item - 1 + row_number() over (order by o.order_id, j) as order_item_id,
        o.order_id,
        case when sim.rnd(s.seed, o.order_id * 8 + j, 94) < s.dirty_rate / 5
            then max_p + 1 + floor(sim.rnd(s.seed, o.order_id * 8 + j, 95) * 1000)::bigint
            else p.product_id end as product_id,
        case when sim.rnd(s.seed, o.order_id * 8 + j, 96) < s.dirty_rate / 10
            then 50 + floor(sim.rnd(s.seed, o.order_id * 8 + j, 97) * 450)::int  -- outlier
            else 1 + floor(power(sim.rnd(s.seed, o.order_id * 8 + j, 34), 3) * 5)::int
        end as quantity,
        greatest(p.price, 1.00) as unit_price,
        o.ordered_at
    from new_orders as o
    cross join lateral generate_series(1, 1 + floor(sim.rnd(s.seed, o.order_id, 33) * 4)::int)
        as j
    join pool_products as p
        on p.rn = 1 + floor(sim.rnd(s.seed, o.order_id * 8 + j, 35) * n_p);

    insert into marketplace.orders (order_id, customer_id, status, ordered_at, shipping_state,
                                    total_amount, created_at, updated_at)
    select
        o.order_id,
        o.customer_id,
        case
            when as_of - o.ordered_at > interval '14 days' then
                case when o.r_status < 0.88 then 'delivered'
                     when o.r_status < 0.95 then 'cancelled' else 'returned' end
            when as_of - o.ordered_at > interval '3 days' then
                case when o.r_status < 0.6 then 'shipped'
                     when o.r_status < 0.9 then 'delivered' else 'cancelled' end
            else
                case when o.r_status < 0.5 then 'pending'
                     when o.r_status < 0.9 then 'paid' else 'cancelled' end
        end,
        o.ordered_at,
        o.shipping_state,
        coalesce(t.total, 0),
        sim.written_at(o.ordered_at),
        sim.written_at(o.ordered_at)
    from new_orders as o
    left join (
        select order_id, sum(quantity * unit_price) as total from new_items group by order_id
    ) as t on t.order_id = o.order_id;

    insert into marketplace.order_items (order_item_id, order_id, product_id, quantity,
                                         unit_price, created_at, updated_at)
    select order_item_id, order_id, product_id, quantity, unit_price,
           sim.written_at(ordered_at), sim.written_at(ordered_at)
    from new_items;

    perform sim.gen_payments(first_order_id, first_order_id + n - 1, as_of);
    return n;
end
$$;

-- One payment per order that left 'pending'; payment_id = order_id. Some do not add up.
-- A payment comes 1 to 121 minutes after its order, but never at or after as_of, the
-- simulated clock: an order placed shortly before it is paid within the time left.
create function sim.gen_payments(lo bigint, hi bigint, as_of timestamptz) returns bigint
language plpgsql as $$
declare
    s sim.state;
    made bigint;
begin
    select * into s from sim.state;
    insert into marketplace.payments (payment_id, order_id, amount, method, status, paid_at,
                                      created_at, updated_at)
    select
        o.order_id,
        o.order_id,
        case when sim.rnd(s.seed, o.order_id, 93) < s.dirty_rate
            then round(o.total_amount * 0.9, 2) + 1  -- does not sum to the order total
            else o.total_amount end,
        sim.pick(array['card','card','card','paypal','bank_transfer','gift_card'],
                 sim.rnd(s.seed, o.order_id, 41)),
        case o.status when 'cancelled' then 'failed' when 'returned' then 'refunded'
                      else 'completed' end,
        case when sim.rnd(s.seed, o.order_id, 98) < s.dirty_rate / 5
            then o.ordered_at - interval '2 hours'  -- paid before it was ordered
            when o.ordered_at + interval '1 minute' * (1 + sim.rnd(s.seed, o.order_id, 42) * 120)
                 < as_of
            then o.ordered_at + interval '1 minute' * (1 + sim.rnd(s.seed, o.order_id, 42) * 120)
            else o.ordered_at + (as_of - o.ordered_at) * sim.rnd(s.seed, o.order_id, 42)
        end,
        sim.written_at(o.ordered_at),
        sim.written_at(o.ordered_at)
    from marketplace.orders as o
    where o.order_id between lo and hi
      and o.status <> 'pending'
      and not exists (select from marketplace.payments as p where p.payment_id = o.order_id);
    get diagnostics made = row_count;
    return made;
end
$$;

create function sim.gen_bids(first_id bigint, n bigint, t0 timestamptz, t1 timestamptz,
                             as_of timestamptz)
returns bigint language plpgsql as $$
declare
    s sim.state;
    n_c bigint := (select count(*) from pool_customers);
    n_p bigint := (select count(*) from pool_products);
begin
    select * into s from sim.state;
    insert into marketplace.bids (bid_id, product_id, bidder_id, amount, placed_at, status,
                                  created_at, updated_at)
    select
        b.id,
        p.product_id,
        c.customer_id,
        case when sim.rnd(s.seed, b.id, 99) < s.dirty_rate
            then round(abs(p.price) * (1 + sim.rnd(s.seed, b.id, 53)::numeric * 0.2), 2)  -- >= price
            else round(abs(p.price) * (0.5 + sim.rnd(s.seed, b.id, 53)::numeric * 0.45), 2) end,
        b.placed_at,
        case when as_of - b.placed_at < interval '7 days' then 'active'
             else sim.pick(array['accepted','rejected','expired','expired'],
                           sim.rnd(s.seed, b.id, 54)) end,
        sim.written_at(b.placed_at),
        sim.written_at(b.placed_at)
    from (
        select id, t0 + (t1 - t0) * sim.rnd(s.seed, id, 52) as placed_at
        from generate_series(first_id, first_id + n - 1) as id
    ) as b
    join pool_products as p on p.rn = 1 + floor(sim.rnd(s.seed, b.id, 50) * n_p)
    join pool_customers as c on c.rn = 1 + floor(sim.rnd(s.seed, b.id, 51) * n_c);
    return n;
end
$$;
