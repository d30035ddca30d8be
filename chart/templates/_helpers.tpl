{{/*
The chart name, or nameOverride; a DNS label (63 characters at most).
*/}}
{{- define "flask-example-1.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of every resource: fullnameOverride, else "<release>-<name>" (just the
release name when it already contains the chart name). Truncated to 63
characters because Service names and label values are DNS labels.
*/}}
{{- define "flask-example-1.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
"<fullname>-<suffix>" kept within 63 characters: the fullname is shortened, the
suffix kept, so derived names stay distinct. Call with (list . "suffix").
*/}}
{{- define "flask-example-1.suffixedName" -}}
{{- $root := index . 0 }}
{{- $suffix := index . 1 }}
{{- $base := include "flask-example-1.fullname" $root | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $base $suffix }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "flask-example-1.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object: the selector labels plus version and ownership.
*/}}
{{- define "flask-example-1.labels" -}}
helm.sh/chart: {{ include "flask-example-1.chart" . }}
{{ include "flask-example-1.selectorLabels" . }}
{{- with include "flask-example-1.versionLabel" . }}
app.kubernetes.io/version: {{ . | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The app version as a label value: characters a label cannot hold become "_", then it is cut
to 63 characters and trimmed to start and end with a letter or digit (empty if none is left).
*/}}
{{- define "flask-example-1.versionLabel" -}}
{{- $version := regexReplaceAll "[^-A-Za-z0-9_.]" (.Chart.AppVersion | toString) "_" | trunc 63 }}
{{- regexReplaceAll "^[^A-Za-z0-9]+|[^A-Za-z0-9]+$" $version "" }}
{{- end }}

{{/*
Selector labels: what a Deployment, Service, PDB and policies select pods by.
They never include a version, because a Deployment's selector is immutable.
*/}}
{{- define "flask-example-1.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flask-example-1.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the pods run as.
*/}}
{{- define "flask-example-1.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flask-example-1.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The pod's TLS secret: tls.secretName, else the one the pod's Certificate writes.
Computed here once; the Deployment, Certificate, the Ingress's and Gateway's backend
verification, ServiceMonitor and test pod use it. Never the public host's secret.
*/}}
{{- define "flask-example-1.tlsSecretName" -}}
{{- default (include "flask-example-1.suffixedName" (list . "tls")) .Values.tls.secretName }}
{{- end }}

{{/*
The image reference: repository@digest when a digest is set (it wins), else repository:tag.
*/}}
{{- define "flask-example-1.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- end }}
{{- end }}

{{/*
The name of the pull secret the chart writes (pullSecret.create).
*/}}
{{- define "flask-example-1.pullSecretName" -}}
{{- include "flask-example-1.suffixedName" (list . "pull") }}
{{- end }}

{{/*
The pods' imagePullSecrets, as a YAML list: the chart's own pull secret first (when it writes
one), then the existing secrets of imagePullSecrets. Empty when there is none.
*/}}
{{- define "flask-example-1.imagePullSecrets" -}}
{{- $secrets := .Values.imagePullSecrets }}
{{- if .Values.pullSecret.create }}
{{- $secrets = prepend $secrets (dict "name" (include "flask-example-1.pullSecretName" .)) }}
{{- end }}
{{- with $secrets }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
The server port's name and scheme follow tls.enabled: the server speaks only one of them.
*/}}
{{- define "flask-example-1.portName" -}}
{{- ternary "https" "http" .Values.tls.enabled }}
{{- end }}

{{- define "flask-example-1.scheme" -}}
{{- include "flask-example-1.portName" . | upper }}
{{- end }}

{{/*
The Service's in-cluster DNS name: one of the pod certificate's names, the one every
in-cluster client (ingress, Gateway, Prometheus, helm test) verifies the pod against.
*/}}
{{- define "flask-example-1.serviceHost" -}}
{{- printf "%s.%s.svc" (include "flask-example-1.fullname" .) .Release.Namespace }}
{{- end }}

{{/*
Seconds the kubelet waits before SIGKILL: longer than the whole shutdown
(preStop wait, then the server's drain delay, then its graceful timeout) plus a margin.
*/}}
{{- define "flask-example-1.terminationGracePeriodSeconds" -}}
{{- $s := .Values.server }}
{{- add $s.preStopSeconds $s.shutdownDelay $s.gracefulTimeout 5 }}
{{- end }}

{{/*
The pods' affinity: the affinity value, plus the podAntiAffinity preset (soft: preferred,
hard: required) that keeps the release's pods on different nodes, unless affinity has its own.
*/}}
{{- define "flask-example-1.affinity" -}}
{{- $affinity := deepCopy .Values.affinity }}
{{- if and .Values.podAntiAffinity (not (hasKey $affinity "podAntiAffinity")) }}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "flask-example-1.selectorLabels" . | fromYaml)) }}
{{- if eq .Values.podAntiAffinity "hard" }}
{{- $_ := set $affinity "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) }}
{{- else }}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) }}
{{- end }}
{{- end }}
{{- with $affinity }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels of the helm test pod: its own name, so the Service never selects it.
*/}}
{{- define "flask-example-1.testSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-test" (include "flask-example-1.name" . | trunc 58 | trimSuffix "-") }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The public host's TLS secret on the Ingress: ingress.tls.secretName, else the one
publicCertificate writes, else empty (the controller's default certificate). It is
never the pod's secret: a private CA's certificate for in-cluster names is not one
browsers accept, and a public certificate cannot carry the Service's names.
*/}}
{{- define "flask-example-1.publicTlsSecretName" -}}
{{- if .Values.ingress.tls.secretName }}
{{- .Values.ingress.tls.secretName }}
{{- else if .Values.publicCertificate.enabled }}
{{- include "flask-example-1.suffixedName" (list . "public-tls") }}
{{- end }}
{{- end }}

{{/*
A cert-manager Certificate's privateKey and usages for a values block with
algorithm and size. Call with the privateKey values.
*/}}
{{- define "flask-example-1.certificateKey" -}}
privateKey:
  # A fresh key on every renewal, so a leaked key stops working.
  rotationPolicy: Always
  algorithm: {{ .algorithm }}
  {{- if ne .algorithm "Ed25519" }}
  size: {{ .size }}
  {{- end }}
usages:
  - server auth
  - digital signature
  {{- if eq .algorithm "RSA" }}
  - key encipherment
  {{- end }}
{{- end }}

{{/*
What every container of the test pods shares: the chart's image, its security context and
resources.
*/}}
{{- define "flask-example-1.testContainer" -}}
image: {{ include "flask-example-1.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
resources:
  {{- toYaml .Values.resources | nindent 2 }}
env:
  - name: PYTHONDONTWRITEBYTECODE
    value: "1"
{{- end }}
