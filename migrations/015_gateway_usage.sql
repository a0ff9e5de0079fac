-- Accounting and budgets of the provider gateway (README, "Provider
-- gateway"): what each job used through it, and two per-key budgets the
-- gateway enforces before each upstream request.

ALTER TABLE jobs
    ADD COLUMN gateway_requests bigint CHECK (gateway_requests >= 0),
    ADD COLUMN gateway_input_tokens bigint CHECK (gateway_input_tokens >= 0),
    ADD COLUMN gateway_output_tokens bigint CHECK (gateway_output_tokens >= 0),
    ADD COLUMN gateway_cost_usd double precision CHECK (gateway_cost_usd >= 0);

COMMENT ON COLUMN jobs.gateway_requests IS
    'Requests the job''s gateway forwarded to model providers (refused ones not counted); NULL: the job never ran to an outcome, or ended before migration 015.';
COMMENT ON COLUMN jobs.gateway_input_tokens IS
    'Input tokens the providers reported in their usage fields for those requests (prompt_tokens, input_tokens, promptTokenCount).';
COMMENT ON COLUMN jobs.gateway_output_tokens IS
    'Output tokens the providers reported (completion_tokens, output_tokens, candidatesTokenCount).';
COMMENT ON COLUMN jobs.gateway_cost_usd IS
    'USD: tokens times the model''s cost (USD per million input/output tokens) in the operator''s provider configuration (AGENT_CONFIG_FILE); 0 for unpriced models. Summed per key and UTC day for max_usd_per_day.';

ALTER TABLE api_keys
    ADD COLUMN max_usd_per_day bigint CHECK (max_usd_per_day >= 0),
    ADD COLUMN max_tokens_per_job bigint CHECK (max_tokens_per_job >= 0);

COMMENT ON COLUMN api_keys.max_usd_per_day IS
    'Whole USD this key''s jobs may spend through the gateway per UTC day (jobs.gateway_cost_usd of the jobs finished that day plus the running job''s own); beyond, the gateway refuses requests and the job fails budget_exceeded. 0: unlimited; NULL: KEY_MAX_USD_PER_DAY.';
COMMENT ON COLUMN api_keys.max_tokens_per_job IS
    'Input plus output tokens one job of this key may use through the gateway; beyond, the job fails budget_exceeded. 0: unlimited; NULL: KEY_MAX_TOKENS_PER_JOB.';

