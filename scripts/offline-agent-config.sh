#!/usr/bin/env bash
# Prints the opencode configuration of offline mode: the providers
# "anthropic" and "openai" (the default model is anthropic/..., the seed's
# example 2 names openai/gpt-4) and "scripted" all point at the scripted
# model server (tests/fakemodel/fake_model.py) through the
# OpenAI-compatible adapter. Used by scripts/run.sh and the tests.
# The worker hands the agent a copy pointed at the job's provider gateway
# (worker/gateway.h), which forwards to BASE_URL like to any provider: so
# offline mode and every test go through the gateway.
#
# Usage: scripts/offline-agent-config.sh BASE_URL   (e.g. http://127.0.0.1:PORT/v1)
#
# "status", "limit" and "cost" override opencode's built-in catalogue:
# without them gpt-4 counts as deprecated (model not found), its 8k
# context makes opencode summarise after every answer and never finish,
# and offline jobs are billed at catalogue prices.
set -euo pipefail
base="${1:?usage: offline-agent-config.sh BASE_URL}"
model='"status": "active", "limit": {"context": 200000, "output": 8192}, "cost": {"input": 0, "output": 0}'
provider() {
    printf '"%s": {"npm": "@ai-sdk/openai-compatible", "options": {"baseURL": "%s", "apiKey": "offline"}, "models": {"%s": {"name": "%s", %s}}}' \
        "$1" "$base" "$2" "$2" "$model"
}
printf '{"provider": {%s, %s, %s}}\n' \
    "$(provider anthropic claude-3-5-sonnet-latest)" \
    "$(provider openai gpt-4)" \
    "$(provider scripted scripted-model)"
