{#- Custom schemas are used verbatim (staging, intermediate, quarantine, marts, snapshots),
    so every environment's warehouse has the same, readable layout; models without one land
    in the target schema. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
