{{/* Names, labels and the values every template derives from. */}}

{{- define "edgeproof.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "edgeproof.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "edgeproof.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "edgeproof.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Common labels; call with (dict "ctx" $ "component" "attestor"). */}}
{{- define "edgeproof.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
{{ include "edgeproof.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: edgeproof
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "edgeproof.selectorLabels" -}}
app.kubernetes.io/name: {{ include "edgeproof.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* An image reference; call with (dict "ctx" $ "image" .Values.attestor.image). */}}
{{- define "edgeproof.image" -}}
{{- $tag := .image.tag | default .ctx.Chart.AppVersion -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "edgeproof.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "edgeproof.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "edgeproof.sqlite" -}}
{{- if eq .Values.database.type "sqlite" }}true{{ end -}}
{{- end -}}

{{/* Replicas: as set, else 2 on PostgreSQL (one may drain while the other serves) and 1 on
SQLite (one writer on one volume). */}}
{{- define "edgeproof.replicas" -}}
{{- if not (kindIs "invalid" .Values.attestor.replicas) -}}
{{- .Values.attestor.replicas | int -}}
{{- else if include "edgeproof.sqlite" . -}}
1
{{- else -}}
2
{{- end -}}
{{- end -}}

{{/* The attestor serves HTTPS itself when it has a certificate. */}}
{{- define "edgeproof.https" -}}
{{- if .Values.tls.existingSecret }}true{{ end -}}
{{- end -}}

{{- define "edgeproof.scheme" -}}
{{- if include "edgeproof.https" . }}HTTPS{{ else }}HTTP{{ end -}}
{{- end -}}

{{- define "edgeproof.portName" -}}
{{- if include "edgeproof.https" . }}https{{ else }}http{{ end -}}
{{- end -}}

{{- define "edgeproof.servicePort" -}}
{{- if not (kindIs "invalid" .Values.service.port) -}}
{{- .Values.service.port | int -}}
{{- else if include "edgeproof.https" . -}}
443
{{- else -}}
80
{{- end -}}
{{- end -}}

{{- define "edgeproof.vault" -}}
{{- if or (eq .Values.issuer "vault") (eq .Values.secretStore.backend "vault") }}true{{ end -}}
{{- end -}}

{{/* Where things are mounted in the attestor container (docs: README "Files in the pod"). */}}
{{- define "edgeproof.paths" -}}
dataDir: /var/lib/edgeproof
config: /etc/edgeproof/config/attestor.toml
passphrase: /etc/edgeproof/ca-passphrase/passphrase
secretStoreKey: /etc/edgeproof/secret-store/secrets.key
tls: /etc/edgeproof/tls
clientCa: /etc/edgeproof/tls-client-ca/ca.crt
vaultCa: /etc/edgeproof/vault-ca/ca.crt
vaultToken: /etc/edgeproof/vault-token/token
vaultSecretId: /etc/edgeproof/vault-approle/secret_id
vaultJwt: /var/run/secrets/edgeproof/vault/token
{{- end -}}

{{/* Whole numbers as integers: Helm reads every YAML number as a float, and toToml would
write port = 8080.0. Mutates the dict it is given (call it on a deepCopy). */}}
{{- define "edgeproof.intify" -}}
{{- $d := . -}}
{{- range $k, $v := $d -}}
{{- if and (kindIs "float64" $v) (eq $v (floor $v)) -}}
{{- $_ := set $d $k (int64 $v) -}}
{{- else if kindIs "map" $v -}}
{{- include "edgeproof.intify" $v -}}
{{- else if kindIs "slice" $v -}}
{{- $items := list -}}
{{- range $v -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) -}}
{{- $items = append $items (int64 .) -}}
{{- else -}}
{{- if kindIs "map" . }}{{ include "edgeproof.intify" . }}{{ end -}}
{{- $items = append $items . -}}
{{- end -}}
{{- end -}}
{{- $_ := set $d $k $items -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* attestor.toml: the operator's attestor.config with the settings the chart owns on top
(listen address, backends, file paths of mounted Secrets). No secret value is ever in it. */}}
{{- define "edgeproof.attestorToml" -}}
{{- $p := include "edgeproof.paths" . | fromYaml -}}
{{- $v := .Values -}}
{{- $managed := dict "host" "0.0.0.0" "port" 8080 "trust_domain" $v.attestor.trustDomain "issuer" $v.issuer -}}
{{- $ca := dict -}}
{{- if $v.ca.passphrase.existingSecret -}}
{{- $_ := set $ca "passphrase_file" $p.passphrase -}}
{{- end -}}
{{- $_ := set $managed "ca" $ca -}}
{{- $secrets := dict "backend" $v.secretStore.backend -}}
{{- if and (eq $v.secretStore.backend "embedded") $v.secretStore.existingSecret -}}
{{- $_ := set $secrets "key_file" $p.secretStoreKey -}}
{{- end -}}
{{- $_ := set $managed "secrets" $secrets -}}
{{- if include "edgeproof.vault" . -}}
{{- $vault := dict "address" $v.vault.address "auth" $v.vault.auth "timeout_seconds" $v.vault.timeoutSeconds -}}
{{- with $v.vault.namespace }}{{ $_ := set $vault "namespace" . }}{{ end -}}
{{- if or $v.vault.caBundle.configMap $v.vault.caBundle.secret -}}
{{- $_ := set $vault "ca_bundle" $p.vaultCa -}}
{{- end -}}
{{- if eq $v.vault.auth "kubernetes" -}}
{{- $_ := set $vault "kubernetes_role" $v.vault.kubernetes.role -}}
{{- $_ := set $vault "kubernetes_mount" $v.vault.kubernetes.mount -}}
{{- $_ := set $vault "kubernetes_jwt_file" $p.vaultJwt -}}
{{- else if eq $v.vault.auth "approle" -}}
{{- $_ := set $vault "approle_mount" $v.vault.approle.mount -}}
{{- $_ := set $vault "role_id" $v.vault.approle.roleId -}}
{{- $_ := set $vault "secret_id_file" $p.vaultSecretId -}}
{{- else -}}
{{- $_ := set $vault "token_file" $p.vaultToken -}}
{{- end -}}
{{- $_ := set $vault "pki_mount" $v.vault.pki.mount -}}
{{- $_ := set $vault "pki_role" $v.vault.pki.role -}}
{{- with $v.vault.pki.dnsSuffix }}{{ $_ := set $vault "dns_suffix" . }}{{ end -}}
{{- $_ := set $vault "kv_mount" $v.vault.kv.mount -}}
{{- $_ := set $vault "kv_path" $v.vault.kv.path -}}
{{- $_ := set $vault "kv_field" $v.vault.kv.field -}}
{{- $_ := set $vault "wrap_ttl_seconds" $v.vault.kv.wrapTtlSeconds -}}
{{- with $v.vault.kv.deviceAddress }}{{ $_ := set $vault "device_address" . }}{{ end -}}
{{- $_ := set $managed "vault" $vault -}}
{{- end -}}
{{- $toml := mustMergeOverwrite (deepCopy $v.attestor.config) $managed -}}
{{- include "edgeproof.intify" $toml -}}
{{- toToml $toml -}}
{{- end -}}

{{/* The attestor's arguments after the image's entrypoint (`attestor`). */}}
{{- define "edgeproof.serveArgs" -}}
{{- $p := include "edgeproof.paths" . | fromYaml -}}
- serve
- --log-format
- {{ .Values.attestor.logFormat }}
{{- if .Values.attestor.dev }}
- --dev
{{- end }}
{{- if include "edgeproof.https" . }}
- --tls-cert
- {{ $p.tls }}/tls.crt
- --tls-key
- {{ $p.tls }}/tls.key
{{- if .Values.tls.clientCa.configMap }}
- --tls-client-ca
- {{ $p.clientCa }}
{{- end }}
{{- else if .Values.tls.insecureHttp }}
- --insecure-http
{{- end }}
{{- if .Values.metrics.enabled }}
- --metrics-port
- {{ .Values.metrics.port | int | quote }}
{{- end }}
{{- end -}}

{{/* The security context of every container the chart runs (the agent's privileged TPM
mode aside, see the README). */}}
{{- define "edgeproof.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "edgeproof.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser | int64 }}
runAsGroup: {{ .runAsGroup | int64 }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The agent's attestor URLs as a JSON list: as set, else this release's Service. */}}
{{- define "edgeproof.agentUrls" -}}
{{- if .Values.agent.attestorUrls -}}
{{- toJson .Values.agent.attestorUrls -}}
{{- else -}}
{{- $scheme := "http" -}}
{{- if include "edgeproof.https" . }}{{ $scheme = "https" }}{{ end -}}
{{- list (printf "%s://%s.%s.svc:%s" $scheme (include "edgeproof.fullname" .) .Release.Namespace (include "edgeproof.servicePort" .)) | toJson -}}
{{- end -}}
{{- end -}}
