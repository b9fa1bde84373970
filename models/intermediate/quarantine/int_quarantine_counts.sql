-- Rows set aside per table and rule: the "counted" part of quarantine, read by the report.
{% set tables = ['customers', 'products', 'orders', 'order_items', 'payments', 'bids'] %}

with

quarantined as (
    {% for table in tables %}
        select
            '{{ table }}' as table_name,
            quarantine_reason
        from {{ ref('int_' ~ table ~ '_quarantined') }}
        {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

counted as (
    select
        table_name,
        quarantine_reason,
        count(*) as quarantined_rows
    from quarantined
    group by table_name, quarantine_reason
)

select * from counted
