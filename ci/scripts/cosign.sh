#!/bin/sh
# Sign and verify the pipeline's image index with cosign (input signing: key or keyless).
#   cosign.sh sign    docker_builder:sign:job: sign IMAGE_REPOSITORY@IMAGE_DIGEST,
#                     the index docker_builder:push:job pushed, and with the
#                     chart_oci input CHART_OCI_REPOSITORY@CHART_OCI_DIGEST, the
#                     chart helm_builder:push:job pushed; with the sbom input,
#                     attest the index's SBOMs (build/sbom/*.cdx.json, from
#                     docker_builder:sbom:job) on the index's digest
#   cosign.sh verify  docker_builder:verify:job: verify the signature (and with the
#                     sbom input the SBOM attestation) of the digest
#                     helm:deploy:job will deploy (that index, or with the image
#                     part off the digest IMAGE_TAG names now) and hand the digest
#                     on as VERIFIED_IMAGE_DIGEST; the deploy refuses any other
# Secrets: the registry password goes through stdin, the key's password is read
# by cosign from COSIGN_PASSWORD, the ID token from SIGSTORE_ID_TOKEN; none of
# them is ever an argument or a log line.
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

mode=${1:-}
signing=${PIPELINE_SIGNING:-off}

# is_kms REFERENCE: whether a cosign key reference names a KMS key (scheme://...).
is_kms() {
	case $1 in
	*://*) return 0 ;;
	*) return 1 ;;
	esac
}

# signing_key: the private key (a file variable's path or a KMS URI), checked.
signing_key() {
	[ -n "${COSIGN_PRIVATE_KEY:-}" ] ||
		die "the signing input is key and COSIGN_PRIVATE_KEY is not set: add it as a CI/CD variable of type File holding cosign.key (cosign generate-key-pair), or as a KMS URI (awskms://, gcpkms://, azurekms://, hashivault://)"
	if is_kms "$COSIGN_PRIVATE_KEY"; then
		printf '%s\n' "$COSIGN_PRIVATE_KEY"
		return
	fi
	[ -f "$COSIGN_PRIVATE_KEY" ] ||
		die "COSIGN_PRIVATE_KEY is neither a file nor a KMS URI: make it a CI/CD variable of type File (GitLab then hands the job its path)"
	[ -n "${COSIGN_PASSWORD+set}" ] ||
		die "COSIGN_PASSWORD is not set: add the key's password as a masked CI/CD variable (empty for a key without one)"
	printf '%s\n' "$COSIGN_PRIVATE_KEY"
}

# verification_key: the public key (a file variable's path or a KMS URI); a KMS
# signing key verifies by itself.
verification_key() {
	if [ -n "${COSIGN_PUBLIC_KEY:-}" ]; then
		is_kms "$COSIGN_PUBLIC_KEY" || [ -f "$COSIGN_PUBLIC_KEY" ] ||
			die "COSIGN_PUBLIC_KEY is neither a file nor a KMS URI: make it a CI/CD variable of type File holding cosign.pub"
		printf '%s\n' "$COSIGN_PUBLIC_KEY"
	elif is_kms "${COSIGN_PRIVATE_KEY:-}"; then
		printf '%s\n' "$COSIGN_PRIVATE_KEY"
	else
		die "the signing input is key and COSIGN_PUBLIC_KEY is not set: add cosign.pub as a CI/CD variable of type File (or use a KMS key in COSIGN_PRIVATE_KEY)"
	fi
}

# keyless_identity: the certificate identity a keyless signature of this
# project's pipelines carries (Fulcio's GitLab identity: the project's URL, two
# slashes, the CI configuration's path and ref), as an anchored regexp.
keyless_identity() {
	require_vars CI_PROJECT_URL
	printf '^%s//\n' "$(printf '%s' "$CI_PROJECT_URL" | sed 's/[].[\\*^$+?(){}|]/\\&/g')"
}

# registry_login: cosign's registry credentials in a job-private docker config.
registry_login() {
	require_vars CI_REGISTRY CI_REGISTRY_USER CI_REGISTRY_PASSWORD
	DOCKER_CONFIG=$(mktemp -d)
	export DOCKER_CONFIG
	trap 'rm -rf "$DOCKER_CONFIG"' EXIT
	# (cosign's warning about the unencrypted config file is only shown on failure.)
	printf '%s' "$CI_REGISTRY_PASSWORD" |
		cosign login "$CI_REGISTRY" --username "$CI_REGISTRY_USER" --password-stdin >"$DOCKER_CONFIG/login.out" 2>&1 ||
		die "cosign cannot log in to $CI_REGISTRY: $(tail -n 1 "$DOCKER_CONFIG/login.out")"
}

# refused_tls OUTPUT: stop with untrusted's one line when cosign's OUTPUT says it
# could not verify a certificate (tls_checked's rule, for output kept in a file
# or a variable).
refused_tls() {
	case $1 in
	*'x509: certificate signed by unknown authority'*) untrusted "$contacted" ;;
	esac
}

# image_digest REFERENCE: the digest a tag names in the registry now.
image_digest() {
	found=$(cosign triangulate "$@" 2>&1) || {
		refused_tls "$found"
		die "cannot resolve $1 in the registry: $(printf '%s' "$found" | tail -n 1)"
	}
	found=$(printf '%s' "$found" | sed -n 's/.*:sha256-\([0-9a-f]\{64\}\)\..*/sha256:\1/p' | head -n 1)
	[ -n "$found" ] || die "cosign triangulate printed no digest for $1: check the cosign image input"
	printf '%s\n' "$found"
}

# index_platforms REFERENCE [FLAGS]: the platforms of the image index REFERENCE.
# cosign has no command that prints a manifest: cosign save copies the index (and
# its images) into an OCI layout, where the index is the blob its digest names.
index_platforms() {
	saved=$DOCKER_CONFIG/saved
	found=$(cosign save --dir "$saved" "$@" 2>&1) || {
		refused_tls "$found"
		die "cannot read the image index $1: $(printf '%s' "$found" | tail -n 1)"
	}
	blob=$saved/blobs/sha256/${1##*@sha256:}
	[ -f "$blob" ] || die "cosign save wrote no manifest for $1: check the cosign image input"
	for arch in $(index_architectures "$(cat "$blob")"); do
		printf 'linux/%s\n' "$arch"
	done
}

# attested_platforms STATEMENTS-FILE: the platforms the SBOMs name in the in-toto
# statements cosign verify-attestation printed (one DSSE envelope a line, the
# statement base64-encoded in its payload; cosign re-encodes the SBOM in it, with
# a space after each comma).
attested_platforms() {
	sed -n 's/.*"payload": *"\([^"]*\)".*/\1/p' "$1" | while read -r payload; do
		printf '%s' "$payload" | base64 -d |
			grep -o "\"name\": *\"$PLATFORM_PROPERTY\", *\"value\": *\"[^\"]*\"" |
			sed 's/.*"value": *"\([^"]*\)"/\1/'
	done
}

case $signing in
key | keyless) ;;
off) die "the signing input is off: docker_builder:sign:job and docker_builder:verify:job do not run then" ;;
*) die "the signing input is '$signing', not key, keyless or off" ;;
esac
fit_names
# The registry's CA (and Sigstore's, where they are private): system CAs plus the
# bundle of PIPELINE_CA_FILE or CI_SERVER_TLS_CA_FILE (SSL_CERT_FILE, read by cosign).
trust_ca
tls=$(tls_flags cosign) || exit 1
contacted="the registry ${CI_REGISTRY:-}"
if [ "$signing" = keyless ] || is_true "${PIPELINE_SIGNING_TLOG:-true}"; then
	contacted="$contacted or Sigstore (Fulcio, Rekor)"
fi

case $mode in
sign)
	references=""
	if [ -n "${IMAGE_DIGEST:-}" ]; then
		require_vars IMAGE_REPOSITORY
		references="$references $(shell_words "$IMAGE_REPOSITORY@$IMAGE_DIGEST")"
	fi
	if [ -n "${CHART_OCI_DIGEST:-}" ]; then
		require_vars CHART_OCI_REPOSITORY
		references="$references $(shell_words "$CHART_OCI_REPOSITORY@$CHART_OCI_DIGEST")"
	fi
	[ -n "$references" ] ||
		die "nothing to sign: neither docker_builder:push:job (IMAGE_DIGEST) nor, with the chart_oci input, helm_builder:push:job (CHART_OCI_DIGEST) handed a digest on"
	set -- --yes
	if [ "$signing" = key ]; then
		key=$(signing_key) || exit 1
		set -- "$@" --key "$key"
		# cosign 3 takes the log from Sigstore's signing config unless told not to.
		is_true "${PIPELINE_SIGNING_TLOG:-true}" || set -- "$@" --use-signing-config=false --tlog-upload=false
	else
		[ -n "${SIGSTORE_ID_TOKEN:-}" ] ||
			die "the signing input is keyless and the job has no SIGSTORE_ID_TOKEN: keyless signing needs GitLab.com's ID token (id_tokens, aud sigstore) in a pipeline of this project's own configuration; on self-managed GitLab use signing: key"
	fi
	registry_login
	eval "set -- \"\$@\" $tls"
	arguments=$(shell_words "$@")
	eval "set -- $references"
	# (for expands its list once: setting the arguments inside the loop is safe.)
	for reference in "$@"; do
		eval "set -- $arguments"
		log "cosign sign $* $reference"
		tls_checked "$contacted" cosign sign "$@" "$reference" >&2 || die "cosign could not sign $reference: its error is above"
		log "signed $reference"
	done
	if [ -n "${IMAGE_DIGEST:-}" ] && is_true "${PIPELINE_SBOM:-false}"; then
		eval "set -- $arguments"
		reference=$IMAGE_REPOSITORY@$IMAGE_DIGEST
		for sbom in build/sbom/*.cdx.json; do
			[ -f "$sbom" ] ||
				die "the sbom input is on and build/sbom/ holds no SBOM: docker_builder:sbom:job must run before this job and keep its artifacts"
			log "cosign attest $* --type cyclonedx --predicate $sbom $reference"
			tls_checked "$contacted" cosign attest "$@" --type cyclonedx --predicate "$sbom" "$reference" >&2 ||
				die "cosign could not attest $sbom to $reference: its error is above"
			log "attested $sbom to $reference"
		done
	fi
	;;
verify)
	if [ "$signing" = key ]; then
		key=$(verification_key) || exit 1
		set -- --key "$key"
		is_true "${PIPELINE_SIGNING_TLOG:-true}" || set -- "$@" --insecure-ignore-tlog=true
		expected="the key $key"
	else
		require_vars CI_SERVER_URL
		identity=$(keyless_identity) || exit 1
		set -- --certificate-identity-regexp "$identity" --certificate-oidc-issuer "$CI_SERVER_URL"
		expected="a certificate of $CI_SERVER_URL for $identity"
	fi
	registry_login
	eval "set -- \"\$@\" $tls"
	if [ -n "${IMAGE_DIGEST:-}" ]; then
		repository=${IMAGE_REPOSITORY:-$CI_REGISTRY_IMAGE}
		digest=$IMAGE_DIGEST
	else
		require_vars CI_REGISTRY_IMAGE
		repository=$CI_REGISTRY_IMAGE
		log "no digest from docker_builder:push:job (build_image input off): verifying what $repository:$IMAGE_TAG names now"
		eval "digest=\$(image_digest \"\$repository:\$IMAGE_TAG\" $tls)" || exit 1
	fi
	reference=$repository@$digest
	log "cosign verify $* $reference"
	answer=$DOCKER_CONFIG/verify.out
	if ! cosign verify "$@" "$reference" >"$answer" 2>&1; then
		refused_tls "$(cat "$answer")"
		die "image $reference has no valid signature by $expected: $(grep -v '^$' "$answer" | tail -n 1)"
	fi
	if is_true "${PIPELINE_SBOM:-false}"; then
		log "cosign verify-attestation --type cyclonedx $* $reference"
		statements=$DOCKER_CONFIG/statements.json
		if ! cosign verify-attestation --type cyclonedx "$@" "$reference" >"$statements" 2>"$answer"; then
			refused_tls "$(cat "$answer")"
			die "image $reference has no valid CycloneDX SBOM attestation by $expected: $(grep -v '^$' "$answer" | tail -n 1)"
		fi
		# Each node pulls its own platform's image: each needs its SBOM.
		attested=$(attested_platforms "$statements")
		log "cosign save $reference (into a temporary folder: the index's platforms)"
		platforms=$(eval "index_platforms \"\$reference\" $tls") || exit 1
		[ -n "$platforms" ] ||
			die "image $reference is not an image index with platforms: docker_builder:push:job pushes one; check IMAGE_DIGEST or IMAGE_TAG"
		for platform in $platforms; do
			printf '%s\n' "$attested" | grep -qx "$platform" ||
				die "image $reference has no CycloneDX SBOM attestation by $expected for its platform $platform: docker_builder:sign:job attests one for each platform of the index (build/sbom/<arch>.cdx.json from docker_builder:sbom:job)"
		done
		log "verified the SBOM attestations of $reference, one for each of its platforms ($(printf '%s' "$platforms" | tr '\n' ' ')): signed by $expected"
	fi
	mkdir -p build
	printf 'IMAGE_REPOSITORY=%s\nIMAGE_DIGEST=%s\nVERIFIED_IMAGE_DIGEST=%s\n' "$repository" "$digest" "$digest" >build/verified.env
	log "verified $reference: signed by $expected"
	;;
*) die "usage: cosign.sh sign|verify (got '$mode')" ;;
esac
