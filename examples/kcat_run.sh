#!/usr/bin/env bash
# Run an agent with nothing but kcat: publish a RunRequested, then read its RunCompleted.
# docs/publishing.md shows this file verbatim; tests/e2e/test_kcat.py runs it.
set -euo pipefail

BOOTSTRAP="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}"
PREFIX="${MINDSTREAM_TOPIC_PREFIX:-}"          # empty unless the deployment uses a topic prefix
TIMEOUT_S="${TIMEOUT_S:-60}"
RUN_ID="run-kcat-$(date +%s)-$RANDOM"           # chosen by you: the run's idempotency key
SESSION="kcat-$RANDOM$RANDOM"                   # the Kafka key: one session's messages stay in order
NOW="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
SINCE_MS=$(( ($(date +%s) - 5) * 1000 ))        # answers are read from shortly before the request

# 1. Publish the request: envelope attributes in headers, the RunRequested as JSON in the value.
#    ce_id is the message id consumers deduplicate by; reusing the run id makes a re-send harmless.
printf '{"run_id":"%s","agent_id":"assistant","session_id":"%s","user_id":"kcat-user","input":"%s"}\n' \
    "$RUN_ID" "$SESSION" "Hello from kcat! Who are you?" |
kcat -P -b "$BOOTSTRAP" -t "${PREFIX}mindstream.runs.requested.v1" -k "$SESSION" \
    -H "ce_id=$RUN_ID" \
    -H "ce_type=mindstream.runs.requested" \
    -H "ce_source=kcat" \
    -H "ce_time=$NOW" \
    -H "ce_specversion=1.0" \
    -H "schema_version=1" \
    -H "content-type=application/json" \
    -H "correlation_id=$RUN_ID"
echo "published run $RUN_ID (session $SESSION)"

# 2. Read the answer: the RunCompleted whose run_id is ours, on mindstream.runs.completed.v1.
#    -o s@<ms> starts at a timestamp, -e exits at the end of the topic, -f prints headers and value.
for _ in $(seq 1 "$TIMEOUT_S"); do
    ANSWER=$(kcat -C -b "$BOOTSTRAP" -t "${PREFIX}mindstream.runs.completed.v1" \
                  -o "s@$SINCE_MS" -e -q -f '%h\t%s\n' | grep -F "\"run_id\":\"$RUN_ID\"" || true)
    if [ -n "$ANSWER" ]; then
        printf '%s\n' "$ANSWER"
        exit 0
    fi
    sleep 1
done
echo "no RunCompleted for run $RUN_ID within $TIMEOUT_S s" >&2
exit 1
