-- The home-made macros (cleaning, derived columns, surrogate key) on fixed inputs.
{{ config(severity='error') }}

with

cases as (
    select
        'clean_text' as macro_name,
        {{ clean_text("'  Anne   Marie '") }} as actual,
        'Anne Marie' as expected
    union all
    select 'clean_text empty', {{ clean_text("'   '") }}, null
    union all
    select 'clean_email', {{ clean_email("'  Mary@Example.COM '") }}, 'mary@example.com'
    union all
    select 'is_valid_email ok', ({{ is_valid_email("'a.b+c@mail.example.co'") }})::text, 'true'
    union all
    select 'is_valid_email at', ({{ is_valid_email("'a at example.com'") }})::text, 'false'
    union all
    select 'is_valid_email space', ({{ is_valid_email("'a@example com'") }})::text, 'false'
    union all
    select 'is_valid_email null', ({{ is_valid_email("null::text") }})::text, 'false'
    union all
    select
        'age_in_years 29 feb',
        ({{ age_in_years("date '2000-02-29'", "date '2025-02-28'") }})::text,
        '24'
    union all
    select
        'age_in_years 1 mar',
        ({{ age_in_years("date '2000-02-29'", "date '2025-03-01'") }})::text,
        '25'
    union all
    select
        'surrogate_key nulls',
        ({{ surrogate_key(["null::text", "'a'"]) }} = {{ surrogate_key(["''", "'a'"]) }})::text,
        'false'
    union all
    select
        'utc_date',
        ({{ utc_date("timestamptz '2025-01-01 23:30:00-05'") }})::text,
        '2025-01-02'
)

select *
from cases
where actual is distinct from expected
