{#- Schema names per environment (the profile's target is ELT_ENV), after dbt's documented
    pattern for environments: prod (and, for now, dev) builds the readable layout (staging,
    intermediate, quarantine, marts, snapshots, reference, test_failures); any other target
    prefixes each schema with its name (staging_marts, ...), so it never writes prod's
    relations in a shared warehouse. Models without a custom schema land in the target
    schema, prefixed likewise.

    dev keeps prod's names for now: the embedded warehouse serves dev only (elt refuses
    staging and prod without external servers), and tests and benchmarks read dev's marts by
    their literal names. Until they go through loader.config.dbt_schema, dev and prod must
    not share a warehouse. loader.config.dbt_schema mirrors this rule for the Python side
    (the quality report's tables); the grant hook (macros/roles.sql) calls this macro. -#}
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
    {{ return(['prod', 'dev']) }}
{%- endmacro %}
