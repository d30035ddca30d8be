#!/bin/sh
# auto:merge:job: turn on GitLab's auto-merge for THIS pipeline's merge request,
# with squash and source-branch removal per the inputs. GitLab itself then
# merges it once its own rules allow: this pipeline succeeded, the approval
# rules are met, the token's user is allowed to merge into the target branch.
# The job never approves, and rebases only when GitLab says the merge needs it
# (detailed_merge_status need_rebase: fast-forward or semi-linear merge method).
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

require_vars CI_API_V4_URL CI_PROJECT_ID CI_MERGE_REQUEST_IID CI_COMMIT_SHA
if [ -z "${AUTO_MERGE_TOKEN:-}" ]; then
	log "auto-merge is off: to turn it on, store an api-scope access token of a user with the Developer role as a masked and hidden CI/CD variable AUTO_MERGE_TOKEN (docs/pipeline.md: Auto-merge)"
	exit 0
fi
# The alpine_image input is a pinned stable Alpine release: its apk has both.
for tool in curl jq; do
	command -v "$tool" >/dev/null || apk add --no-cache "$tool" >&2
done
# GitLab behind a private CA: the system's CAs plus PIPELINE_CA_FILE or the
# runner's CI_SERVER_TLS_CA_FILE verify it.
trust_ca

mr="$CI_API_V4_URL/projects/$CI_PROJECT_ID/merge_requests/$CI_MERGE_REQUEST_IID"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The token goes to curl in a private header file, never on the command line.
printf 'PRIVATE-TOKEN: %s\n' "$AUTO_MERGE_TOKEN" >"$work/header"
body="$work/body.json"

# api METHOD PATH HINT [curl args...]: call the merge request's API; the JSON
# answer lands in $body; anything but 2xx stops the job with GitLab's reason
# and HINT.
api() {
	api_method=$1
	api_url=$mr$2
	api_hint=$3
	shift 3
	api_tls=$(tls_flags gitlab-api)
	eval "set -- $api_tls \"\$@\""
	debug "$api_method $api_url"
	curl_checked "$body" "$api_url" "GitLab refused $api_method $api_url" "$api_hint" \
		--request "$api_method" --header "@$work/header" "$@"
}

token_hint="check that AUTO_MERGE_TOKEN is a valid token with the api scope of a project member"

# merge_status: the merge request's detailed_merge_status, asked again (a GET
# makes GitLab recheck) while GitLab is still working it out after a push.
merge_status() {
	attempt=1
	while :; do
		api GET "" "$token_hint"
		status=$(jq -r .detailed_merge_status "$body")
		case $status in
		preparing | checking | unchecked) ;;
		*) return 0 ;;
		esac
		[ "$attempt" -lt "${MERGE_STATUS_ATTEMPTS:-10}" ] || return 0
		attempt=$((attempt + 1))
		sleep "${MERGE_STATUS_DELAY:-3}"
	done
}

merge_status
state=$(jq -r .state "$body")
[ "$state" = opened ] || die "merge request !$CI_MERGE_REQUEST_IID is $state, not opened: nothing to merge"
head=$(jq -r .sha "$body")
tested=${CI_MERGE_REQUEST_SOURCE_BRANCH_SHA:-$CI_COMMIT_SHA}
if [ "$head" != "$tested" ]; then
	log "merge request !$CI_MERGE_REQUEST_IID moved on to $head; the pipeline of that commit sets auto-merge"
	exit 0
fi

if [ "$status" = need_rebase ]; then
	# The project's merge method needs the source branch on top of the target:
	# a rebase pushes a new head, whose pipeline sets auto-merge.
	api PUT /rebase "the token's user must be allowed to push to the source branch"
	log "merge request !$CI_MERGE_REQUEST_IID must be rebased before it can merge (detailed_merge_status need_rebase): rebase requested; the new pipeline sets auto-merge"
	exit 0
fi

remove=false
[ "${MERGE_BRANCH_ACTION:-skip}" = delete ] && remove=true
squash=false
is_true "${MERGE_SQUASH:-true}" && squash=true
# 405: GitLab cannot auto-merge the merge request as it is (its status says
# why); 401: the token's user is not allowed to merge into the target branch.
api PUT /merge "on 405 GitLab cannot auto-merge it while its detailed_merge_status is $status; on 401 the token's user is not allowed to merge into the target branch (docs/pipeline.md: Auto-merge)" \
	--data-urlencode "sha=$head" --data-urlencode auto_merge=true \
	--data-urlencode "squash=$squash" --data-urlencode "should_remove_source_branch=$remove"
if [ "$(jq -r .state "$body")" = merged ]; then
	log "merged merge request !$CI_MERGE_REQUEST_IID"
else
	log "auto-merge set on merge request !$CI_MERGE_REQUEST_IID (squash=$squash, remove source branch=$remove): GitLab merges it when the pipeline succeeds and its rules allow (now: $status)"
fi
