-- The home-made macros (cleaning, derived columns, surrogate key) on fixed inputs.
{{ config(severity='error', store_failures=true) }}

with

cases (macro_case, actual, expected) as (
    values
    ('clean_text', {{ clean_text("'  Anne   Marie '") }}, 'Anne Marie'),
    ('clean_text empty', {{ clean_text("'   '") }}, null),
    ('clean_email', {{ clean_email("'  Mary@Example.COM '") }}, 'mary@example.com'),
    ('is_valid_email ok', ({{ is_valid_email("'a.b+c@mail.example.co'") }})::text, 'true'),
    ('is_valid_email at', ({{ is_valid_email("'a at example.com'") }})::text, 'false'),
    ('is_valid_email space', ({{ is_valid_email("'a@example com'") }})::text, 'false'),
    ('is_valid_email null', ({{ is_valid_email("null::text") }})::text, 'false'),
    (
        'age_in_years 29 feb, common year',
        ({{ age_in_years("date '2000-02-29'", "date '2025-02-28'") }})::text,
        '24'
    ),
    (
        'age_in_years 1 mar, common year',
        ({{ age_in_years("date '2000-02-29'", "date '2025-03-01'") }})::text,
        '25'
    ),
    (
        'surrogate_key keeps null apart from empty',
        (
            {{ dbt_utils.generate_surrogate_key(["null::text", "'a'"]) }}
            = {{ dbt_utils.generate_surrogate_key(["''", "'a'"]) }}
        )::text,
        'false'
    ),
    (
        'utc_date',
        ({{ utc_date("timestamptz '2025-01-01 23:30:00-05'") }})::text,
        '2025-01-02'
    )
)

select
    macro_case,
    actual,
    expected
from cases
where actual is distinct from expected
