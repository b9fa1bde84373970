{#- Helpers of the hard rules in the int_*_validated models. -#}

{#- True when a business timestamp lies after this build's clock (run_started_at) by more
    than var future_date_tolerance, 'infinity' included: the row is quarantined as
    date_in_future. One order dated 9999-12-31 would otherwise open a day in daily_revenue
    eight thousand years away and push every anomaly monitor's window past the data. Not
    var today: a backfill that pins "today" for the derived columns would set aside every
    later row. An increment checks these rows again (their time may come: a clock that ran
    fast), so a row leaves quarantine at the first build after its date. -#}
{% macro is_dated_in_future(column) -%}
    {{ column }} > {{ validation_time() }} + interval '{{ var("future_date_tolerance") }}'
{%- endmacro %}
