{#- Derived-column helpers shared by the marts. -#}

{#- "Today" as a date: var('today') when set (unit tests, backfills), else current_date. -#}
{% macro as_of_date() -%}
    {%- if var('today', none) -%}
        date '{{ var("today") }}'
    {%- else -%}
        current_date
    {%- endif -%}
{%- endmacro %}

{#- Whole years between a birth date and a date; someone born on 29 February turns a year
    older on 1 March in common years (PostgreSQL's age() convention). -#}
{% macro age_in_years(birth_date, as_of) -%}
    extract(year from age({{ as_of }}, {{ birth_date }}))::integer
{%- endmacro %}

{#- The start of an incremental window: newest `column` already in the model minus the
    lookback (var incremental_lookback). Read when the model is compiled and inlined as a
    constant, so the planner sees how few rows lie beyond it and reads them by index. -#}
{% macro incremental_cutoff(column='_loaded_at') -%}
    {%- if execute -%}
        {%- set found = run_query(
            "select (coalesce(max(" ~ column ~ "), '-infinity'::timestamptz) - interval '"
            ~ var("incremental_lookback") ~ "')::text from " ~ this
        ) -%}
        '{{ found.columns[0].values()[0] }}'::timestamptz
    {%- else -%}
        '-infinity'::timestamptz
    {%- endif -%}
{%- endmacro %}
