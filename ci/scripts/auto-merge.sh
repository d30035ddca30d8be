#!/bin/sh
# auto:merge:job: merge THIS pipeline's merge request once the pipeline
# succeeds: rebase it when it is behind its target, approve it, and turn on
# GitLab's auto-merge with squash and source-branch removal per the inputs.
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

require_vars CI_API_V4_URL CI_PROJECT_ID CI_MERGE_REQUEST_IID CI_COMMIT_SHA
[ -n "${AUTO_MERGE_TOKEN:-}" ] ||
	die "AUTO_MERGE_TOKEN is not set: create a project access token (scope api, a role allowed to approve and merge into the target branch) and store it as a masked CI/CD variable named AUTO_MERGE_TOKEN"
for tool in curl jq; do
	command -v "$tool" >/dev/null || apk add --no-cache "$tool" >&2
done

mr="$CI_API_V4_URL/projects/$CI_PROJECT_ID/merge_requests/$CI_MERGE_REQUEST_IID"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The token goes to curl in a private header file, never on the command line.
printf 'PRIVATE-TOKEN: %s\n' "$AUTO_MERGE_TOKEN" >"$work/header"
body="$work/body.json"

# api METHOD PATH [curl args...]: call the merge request's API; the JSON
# answer lands in $body; anything but 2xx stops the job with GitLab's reason.
api() {
	api_method=$1
	api_url=$mr$2
	shift 2
	# The GitLab server's own CA, as the runner hands it over, verifies it.
	api_tls=$(tls_flags gitlab-api)
	eval "set -- $api_tls \"\$@\""
	debug "$api_method $api_url"
	curl_checked "$body" "$api_url" "GitLab refused $api_method $api_url" \
		"check that AUTO_MERGE_TOKEN is valid, has the api scope and a role that may approve and merge" \
		--request "$api_method" --header "@$work/header" "$@"
}

api GET "?include_diverged_commits_count=true"
state=$(jq -r .state "$body")
[ "$state" = opened ] || die "merge request !$CI_MERGE_REQUEST_IID is $state, not opened: nothing to merge"
head=$(jq -r .sha "$body")
tested=${CI_MERGE_REQUEST_SOURCE_BRANCH_SHA:-$CI_COMMIT_SHA}
if [ "$head" != "$tested" ]; then
	log "merge request !$CI_MERGE_REQUEST_IID moved on to $head; the pipeline of that commit merges it"
	exit 0
fi

behind=$(jq -r '.diverged_commits_count // 0' "$body")
if [ "$behind" -gt 0 ]; then
	# A rebase pushes a new head; that commit's pipeline approves and merges.
	api PUT /rebase
	log "merge request !$CI_MERGE_REQUEST_IID was behind its target: rebase requested; the new pipeline merges it"
	exit 0
fi

api GET /approvals
approved=$(jq -r .user_has_approved "$body")
if [ "$approved" != true ]; then
	api POST /approve --data-urlencode "sha=$head"
	log "approved merge request !$CI_MERGE_REQUEST_IID"
fi

remove=false
[ "${MERGE_BRANCH_ACTION:-skip}" = delete ] && remove=true
squash=false
is_true "${MERGE_SQUASH:-true}" && squash=true
api PUT /merge --data-urlencode "sha=$head" --data-urlencode auto_merge=true \
	--data-urlencode "squash=$squash" --data-urlencode "should_remove_source_branch=$remove"
log "auto-merge set on merge request !$CI_MERGE_REQUEST_IID (squash=$squash, remove source branch=$remove): $(jq -r .detailed_merge_status "$body")"
