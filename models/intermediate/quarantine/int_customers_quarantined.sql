-- customers set aside by a hard rule, with the rule that caught them (quarantine_reason).
-- A plain filter over the validated table (its partial index on quarantine_reason serves it).
select *
from {{ ref('int_customers_validated') }}
where quarantine_reason is not null
