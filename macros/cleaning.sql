{#- Cleaning helpers used by the staging models. Each returns a SQL expression. -#}

{% macro clean_text(column) -%}
    nullif(regexp_replace(trim({{ column }}), '\s+', ' ', 'g'), '')
{%- endmacro %}

{% macro clean_email(column) -%}
    nullif(lower(trim({{ column }})), '')
{%- endmacro %}

{% macro clean_code(column) -%}
    nullif(lower(trim({{ column }})), '')
{%- endmacro %}

{#- The key a free-text state is matched on: upper case, single spaces, no padding. -#}
{% macro state_lookup_key(column) -%}
    upper(nullif(regexp_replace(trim({{ column }}), '\s+', ' ', 'g'), ''))
{%- endmacro %}

{#- True when an (already lower-cased) email has the shape local@domain.tld. -#}
{% macro is_valid_email(column) -%}
    coalesce({{ column }} ~ '^[a-z0-9._%+''-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$', false)
{%- endmacro %}

{#- A timestamptz as a UTC calendar date. -#}
{% macro utc_date(column) -%}
    timezone('UTC', {{ column }})::date
{%- endmacro %}
