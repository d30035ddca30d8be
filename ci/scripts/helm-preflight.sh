#!/bin/sh
# Before the deploy, check through the GitLab agent's kube context that the
# cluster has what the chart, rendered with this pipeline's values, needs:
#   - every kind it renders is served (the CRDs of enabled features installed);
#   - the agent may do in the namespace what Helm does with each of them;
#   - the IngressClass, the Gateways of httpRoute.parentRefs and the
#     cert-manager issuer exist, and the issuer is Ready;
#   - the namespace's Pod Security level admits the chart's pods.
# Prints one line per gap, naming the input or cluster object to fix, then
# fails; a deploy would otherwise fail late or wait for its whole timeout.
# An object the agent may not read (a cluster-scoped one, say) is said to be
# unchecked, not a gap: the deploy itself never reads it.
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

fit_names
require_vars KUBE_CONTEXT
private_helm_home
# KAS, whose kubeconfig from GitLab carries no CA, is verified against the system
# CAs plus the bundle of PIPELINE_CA_FILE or CI_SERVER_TLS_CA_FILE (SSL_CERT_FILE).
trust_ca

chart=${CHART_DIR:-chart}
[ -f "$chart/Chart.yaml" ] || die "$chart/Chart.yaml is missing: set the chart_dir input to the chart's folder"
values=$(sh "$(dirname "$0")/deploy-values.sh")
set -- template "$RELEASE_NAME" "$chart" --namespace "$NS" --values "$values"
# The checks need the pull Secret's kind, not its content: a made-up credential.
if [ "${PULL_SECRET:-deploy-token}" = deploy-token ]; then
	set -- "$@" --set-string pullSecret.username=deploy-token-user,pullSecret.password=not-the-deploy-token
fi
if [ -n "${VALUES_FILE:-}" ]; then
	set -- "$@" --values "$VALUES_FILE"
fi
work=build/preflight
rm -rf "$work"
mkdir -p "$work"
helm "$@" >"$work/rendered.yaml" || die "helm template failed for the chart in $chart: helm's error above names the value to fix"

gaps=0
# gap MESSAGE: one thing the cluster or the inputs must change before a deploy.
gap() {
	printf 'PREFLIGHT GAP: %s\n' "$*" >&2
	gaps=$((gaps + 1))
}

# kc ARGS...: kubectl as the agent (never reads the caller's stdin).
kc() {
	kubectl --context "$KUBE_CONTEXT" "$@" </dev/null
}

# facts: what the rendered manifests hold, one line each:
#   object API-VERSION KIND NAME | ingressclass NAME
#   gateway NAMESPACE-OR-- NAME  | issuer KIND NAME GROUP
facts() {
	awk '
	function flush() {
		if (kind != "") print "object", api, kind, name
		if (ref_name != "") print "gateway", (ref_ns == "" ? "-" : ref_ns), ref_name
		if (issuer["name:"] != "") print "issuer", issuer["kind:"], issuer["name:"], issuer["group:"]
		api = kind = name = section = ref_name = ref_ns = ""
		split("", issuer)
	}
	{ gsub(/"/, "") }
	/^---/ { flush(); next }
	/^[a-zA-Z]/ { section = $1 }
	/^apiVersion:/ { api = $2 }
	/^kind:/ { kind = $2 }
	section == "metadata:" && /^  name:/ && name == "" { name = $2 }
	/^  ingressClassName:/ { print "ingressclass", $2 }
	/^  [a-zA-Z]/ { block = $1 }
	block == "issuerRef:" && /^    [a-z]+:/ { issuer[$1] = $2 }
	block == "issuerRef:" && /^  [a-zA-Z]/ && $1 != "issuerRef:" { block = "" }
	block == "parentRefs:" && /^    - / {
		if (ref_name != "") print "gateway", (ref_ns == "" ? "-" : ref_ns), ref_name
		ref_name = ref_ns = ""
		sub(/- /, "  ")
	}
	block == "parentRefs:" && /^      name:/ { ref_name = $2 }
	block == "parentRefs:" && /^      namespace:/ { ref_ns = $2 }
	END { flush() }
	' "$work/rendered.yaml"
}
facts >"$work/facts"

# The kinds the API server serves: NAME [SHORTNAMES] APIVERSION NAMESPACED KIND.
tls_checked "the agent server (KAS) of context $KUBE_CONTEXT" kc api-resources --no-headers >"$work/served" ||
	[ -s "$work/served" ] || die "cannot list the API server's kinds with context $KUBE_CONTEXT: is the agent connected?"

# resource_of API-VERSION KIND: the served resource (plural.group), or nothing.
resource_of() {
	awk -v api="$1" -v kind="$2" '$(NF - 2) == api && $NF == kind {
		split(api, part, "/"); print (part[2] == "" ? $1 : $1 "." part[1]); exit
	}' "$work/served"
}

# feature_of KIND: the chart value (or project) behind a kind that needs a CRD.
feature_of() {
	case $1 in
	Certificate) printf 'cert-manager (chart value certificate.enabled)' ;;
	Issuer | ClusterIssuer) printf 'cert-manager (inputs certificate_issuer_kind, certificate_issuer_name)' ;;
	HTTPRoute) printf 'the Gateway API (chart value httpRoute.enabled)' ;;
	BackendTLSPolicy) printf 'the Gateway API (chart value httpRoute.backendTLS.enabled)' ;;
	ServiceMonitor) printf 'the Prometheus Operator (chart value serviceMonitor.enabled)' ;;
	*) printf 'the project that defines it' ;;
	esac
}

# Helm stores each release revision as a Secret of the namespace.
printf 'secrets\n' >"$work/resources"
while read -r fact api kind _name; do
	[ "$fact" = object ] || continue
	resource=$(resource_of "$api" "$kind")
	if [ -z "$resource" ]; then
		gap "kind $kind ($api) is not served by the cluster: install the CRDs of $(feature_of "$kind"), or turn that feature off"
		continue
	fi
	printf '%s\n' "$resource" >>"$work/resources"
done <"$work/facts"

# What Helm does to the release's objects: read, create, patch, delete, and watch them (--wait).
sort -u "$work/resources" >"$work/resources.sorted"
while read -r resource; do
	for verb in get list watch create patch delete; do
		kc auth can-i "$verb" "$resource" --namespace "$NS" >/dev/null 2>&1 ||
			gap "the agent of context $KUBE_CONTEXT may not $verb $resource in namespace $NS: bind it a Role there that allows it (the admin ClusterRole in a RoleBinding does)"
	done
done <"$work/resources.sorted"

# check_exists WHAT INPUT KUBECTL-GET-ARGS...: a gap when the object is missing;
# a note when the agent may not read it (a cluster-scoped object, say).
check_exists() {
	what=$1
	input=$2
	shift 2
	if out=$(kc get "$@" -o name 2>&1); then
		return 0
	fi
	case $out in
	*NotFound* | *"not found"*) gap "$what does not exist: $input" ;;
	*Forbidden* | *forbidden*) log "preflight: $what not checked: the agent may not read it (grant it get on that kind to have it checked)" ;;
	*) gap "cannot read $what: $out" ;;
	esac
	return 1
}

tier=${PIPELINE_TIER:-dev}
while read -r fact a b c; do
	case $fact in
	ingressclass)
		check_exists "IngressClass $a" "set the ingress_class_$tier input to one the cluster has (or the variable INGRESS_CLASS_NAME)" \
			ingressclasses.networking.k8s.io "$a" || :
		;;
	gateway)
		[ "$a" != - ] || a=$NS
		if [ -n "$(resource_of gateway.networking.k8s.io/v1 Gateway)" ]; then
			check_exists "Gateway $b in namespace $a" "fix httpRoute.parentRefs in the values file, or create the Gateway" \
				gateways.gateway.networking.k8s.io "$b" --namespace "$a" || :
		else
			gap "kind Gateway (gateway.networking.k8s.io/v1) is not served by the cluster: install the Gateway API's CRDs, or turn httpRoute off"
		fi
		;;
	issuer)
		if [ "$c" != cert-manager.io ]; then
			log "preflight: issuer $a $b of group $c not checked: only cert-manager.io issuers are"
			continue
		fi
		resource=$(resource_of cert-manager.io/v1 "$a")
		if [ -z "$resource" ]; then
			gap "kind $a (cert-manager.io/v1) is not served by the cluster: install the CRDs of $(feature_of "$a")"
			continue
		fi
		# the pod's certificate and the public host's each have their inputs
		inputs=certificate_issuer
		[ "$b" = "${CERTIFICATE_ISSUER_NAME:-}" ] || [ "$b" != "${PUBLIC_ISSUER_NAME:-}" ] || inputs=public_issuer
		set -- "$resource" "$b"
		[ "$a" = ClusterIssuer ] || set -- "$@" --namespace "$NS"
		check_exists "$a $b" "set the ${inputs}_name and ${inputs}_kind inputs to an issuer the cluster has" "$@" || continue
		ready=$(kc get "$@" -o jsonpath='{range .status.conditions[?(@.type=="Ready")]}{.status}: {.reason}: {.message}{end}')
		case $ready in
		True:*) ;;
		'') gap "$a $b is not Ready (it reports no Ready condition): fix the issuer (kubectl describe $resource $b) or choose a Ready one with the ${inputs}_name input" ;;
		*) gap "$a $b is not Ready ($ready): fix the issuer or choose a Ready one with the ${inputs}_name input" ;;
		esac
		;;
	esac
done <"$work/facts"

# Pod Security: a server-side dry run of every pod-bearing manifest under a new
# name. The namespace's enforce level refuses a Pod outright, and warns about a
# Deployment whose pods it would refuse.
awk -v dir="$work" '
	/^---/ { n++ }
	{ gsub(/\r/, ""); print > (dir "/doc-" n ".yaml") }
' "$work/rendered.yaml"
for doc in "$work"/doc-*.yaml; do
	grep -Eq '^kind: (Deployment|Pod|StatefulSet|DaemonSet|Job|CronJob)$' "$doc" || continue
	kind=$(sed -n 's/^kind: //p' "$doc")
	# the first metadata name becomes a generateName, so no existing object is touched
	sed '/^metadata:/,/^[^ ]/ s/^  name: \(.*\)$/  generateName: \1-/' "$doc" >"$doc.new"
	answer=$(kubectl --context "$KUBE_CONTEXT" create --dry-run=server --namespace "$NS" -f "$doc.new" 2>&1) || :
	violation=$(printf '%s\n' "$answer" | sed -n 's/.*violates* \(PodSecurity .*\)$/violates \1/p')
	[ -z "$violation" ] ||
		gap "namespace $NS's Pod Security level refuses the chart's $kind: $violation: fix the chart values named there (securityContext, podSecurityContext), or the namespace's pod-security.kubernetes.io/enforce label"
done

if [ "$gaps" -gt 0 ]; then
	die "preflight found $gaps gap(s) above for release $RELEASE_NAME in $NS: fix them before deploying (or turn this check off with the preflight input)"
fi
log "preflight: the cluster has everything release $RELEASE_NAME in $NS needs (context $KUBE_CONTEXT)"
