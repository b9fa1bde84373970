-- One simulated day of marketplace activity. Called once per day, each in its own transaction.
-- The day is the one after sim.state.sim_day (a UTC day); its business timestamps lie in
-- it (late orders days before it, payments before its end), and it must be over: the
-- simulated clock, 00:00 UTC after the day, never passes now().

create function sim.advance_day() returns jsonb
language plpgsql as $$
declare
    s sim.state;
    day_start timestamptz;
    day_end timestamptz;
    k bigint;  -- a per-day salt so each day draws fresh numbers
    n_cust bigint;
    n_prod bigint;
    n_ord bigint;
    n_bid bigint;
    next_id bigint;
    counts jsonb := '{}';
    made bigint;
begin
    update sim.state set sim_day = sim_day + 1, days_run = days_run + 1;
    select * into s from sim.state;
    day_start := s.sim_day::timestamp at time zone 'UTC';
    day_end := day_start + interval '1 day';
    if day_end > now() then
        raise exception 'cannot simulate % before it is over: it ends at % UTC and now() is %',
            s.sim_day, day_end at time zone 'UTC', now() at time zone 'UTC'
            using errcode = 'data_exception',
                  hint = 'the last day that can be simulated is yesterday (UTC)';
    end if;
    k := s.days_run * 100000;
    n_cust := greatest(1, round(100000 * s.scale * 0.002));
    n_prod := greatest(1, round(50000 * s.scale * 0.002));
    n_ord := greatest(1, round(1000000 * s.scale / 730));
    n_bid := greatest(1, round(2000000 * s.scale / 730));

    -- new customers and products
    next_id := (select coalesce(max(customer_id), 0) + 1 from marketplace.customers);
    perform sim.gen_customers(next_id, n_cust, day_start, day_end);
    perform sim.refresh_pools();
    next_id := (select coalesce(max(product_id), 0) + 1 from marketplace.products);
    perform sim.gen_products(next_id, n_prod, day_start, day_end);
    perform sim.refresh_pools();
    counts := counts || jsonb_build_object('new_customers', n_cust, 'new_products', n_prod);

    -- new orders (with items and payments); a share is late: its business date is days old
    next_id := (select coalesce(max(order_id), 0) + 1 from marketplace.orders);
    made := round(n_ord * 0.95);
    perform sim.gen_orders(next_id, made, day_start, day_end, day_end);
    perform sim.gen_orders(next_id + made, n_ord - made,
                           day_start - interval '5 days', day_start - interval '1 day', day_end);
    counts := counts || jsonb_build_object('new_orders', n_ord, 'late_orders', n_ord - made);

    -- bids, and retracted (hard-deleted) bids
    next_id := (select coalesce(max(bid_id), 0) + 1 from marketplace.bids);
    perform sim.gen_bids(next_id, n_bid, day_start, day_end, day_end);
    delete from marketplace.bids as b
    where b.status = 'active' and sim.rnd(s.seed, b.bid_id + k, 60) < 0.01;
    get diagnostics made = row_count;
    counts := counts || jsonb_build_object('new_bids', n_bid, 'retracted_bids', made);

    -- order status transitions; some written by an application whose clock runs behind
    update marketplace.orders as o set
        status = case o.status when 'pending' then 'paid' when 'paid' then 'shipped'
                               else 'delivered' end,
        updated_at = case
            when sim.rnd(s.seed, o.order_id + k, 61) < 0.02 then now() - interval '3 minutes'
            when sim.rnd(s.seed, o.order_id + k, 61) < 0.03 then now() - interval '3 hours'
            else o.updated_at end
    where o.status in ('pending', 'paid', 'shipped')
      and sim.rnd(s.seed, o.order_id + k, 62) < 0.5;
    get diagnostics made = row_count;
    counts := counts || jsonb_build_object('status_changes', made);
    perform sim.gen_payments(
        (select coalesce(min(order_id), 0) from marketplace.orders where status = 'paid'),
        (select coalesce(max(order_id), 0) from marketplace.orders), day_end);

    -- address changes (SCD2 material) and price changes
    update marketplace.customers as c set
        street = (1 + floor(sim.rnd(s.seed, c.customer_id + k, 64) * 9998))::int
            || ' ' || split_part(c.street, ' ', 2) || ' Ave',
        city = sim.pick(array['Portland','Austin','Denver','Boston','Raleigh'],
                        sim.rnd(s.seed, c.customer_id + k, 65)),
        zip = lpad(floor(sim.rnd(s.seed, c.customer_id + k, 66) * 99999)::int::text, 5, '0')
    where sim.rnd(s.seed, c.customer_id + k, 63) < 0.002
      and c.first_name <> 'REDACTED';
    get diagnostics made = row_count;
    counts := counts || jsonb_build_object('address_changes', made);
    update marketplace.products as p set
        price = round(p.price * (0.8 + sim.rnd(s.seed, p.product_id + k, 68)::numeric * 0.4), 2)
    where sim.rnd(s.seed, p.product_id + k, 67) < 0.005;
    get diagnostics made = row_count;
    counts := counts || jsonb_build_object('price_changes', made);

    -- product purges: their bids go too; old order items keep pointing at them
    delete from marketplace.products as p
    where sim.rnd(s.seed, p.product_id + k, 69) < 0.0005
      and not exists (select from marketplace.products as q where q.product_id = p.product_id
                      and q.status = 'active');
    get diagnostics made = row_count;
    counts := counts || jsonb_build_object('deleted_products', made);

    -- customer deletions: hard delete when nothing references them, else anonymise
    create temp table leaving on commit drop as
    select c.customer_id,
        exists (select from marketplace.orders as o where o.customer_id = c.customer_id)
        or exists (select from marketplace.products as p where p.seller_id = c.customer_id)
        or exists (select from marketplace.bids as b where b.bidder_id = c.customer_id)
        as referenced
    from marketplace.customers as c
    where sim.rnd(s.seed, c.customer_id + k, 70) < 0.001 and c.first_name <> 'REDACTED';
    delete from marketplace.customers as c using leaving as l
    where l.customer_id = c.customer_id and not l.referenced;
    get diagnostics made = row_count;
    counts := counts || jsonb_build_object('deleted_customers', made);
    update marketplace.customers as c set
        email = 'deleted-' || c.customer_id || '@anonymised.invalid',
        first_name = 'REDACTED', last_name = 'REDACTED', phone = null, street = null,
        birth_date = null
    from leaving as l
    where l.customer_id = c.customer_id and l.referenced;
    get diagnostics made = row_count;
    counts := counts || jsonb_build_object('anonymised_customers', made);
    drop table leaving;

    return counts || jsonb_build_object('sim_day', s.sim_day);
end
$$;
