{#- Schema names per environment (the profile's target is ELT_ENV), after dbt's documented
    pattern for environments: prod builds the readable layout (staging, intermediate,
    quarantine, marts, snapshots, reference, test_failures); any other target prefixes each
    schema with its name (dev_marts, staging_marts, ...), so two environments pointed at one
    warehouse never write each other's relations. Models without a custom schema land in the
    target schema, prefixed likewise. loader.config.dbt_schema mirrors this rule for the
    Python side (the quality report, the publish task); the grant hook (macros/roles.sql) and
    the publish macros (macros/publish.sql) call this macro. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- set schema = custom_schema_name | trim if custom_schema_name is not none
        else target.schema -%}
    {%- if target.name in unprefixed_targets() -%}
        {{ schema }}
    {%- else -%}
        {{ target.name }}_{{ schema }}
    {%- endif -%}
{%- endmacro %}

{% macro unprefixed_targets() -%}
    {{ return(['prod']) }}
{%- endmacro %}
