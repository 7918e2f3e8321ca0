{{/* Refusals. Each message says what to change. The first block refuses settings that can
never run (the attestor itself would refuse to start); the second, under strict mode
(values `strict`, on by default), refuses development settings. */}}

{{- define "edgeproof.validate" -}}
{{- $v := .Values -}}
{{- $sqlite := include "edgeproof.sqlite" . -}}
{{- $replicas := include "edgeproof.replicas" . | int -}}
{{- if not $v.attestor.enabled -}}
{{- if not $v.agent.enabled -}}
{{- fail "nothing to deploy: attestor.enabled and agent.enabled are both false" -}}
{{- end -}}
{{- else -}}
{{- if and (not $sqlite) (not $v.database.existingSecret) -}}
{{- fail "database.type=postgresql needs database.existingSecret: a Secret whose key database.key holds the database URL (postgresql://user:password@host:5432/db)" -}}
{{- end -}}
{{- if and (not $v.attestor.dev) (not $v.ca.passphrase.existingSecret) -}}
{{- fail "set ca.passphrase.existingSecret: a Secret holding the CA key passphrase (key ca.passphrase.key); only attestor.dev=true (development) runs without one" -}}
{{- end -}}
{{- if and (not $sqlite) (not $v.ca.existingSecret) -}}
{{- fail "database.type=postgresql: every replica must load the same CA, so set ca.existingSecret to a Secret made from `attestor init` (root.pem, issuing.pem, issuing.key, signing.key; see the chart README)" -}}
{{- end -}}
{{- if and (not $sqlite) (eq $v.secretStore.backend "embedded") (not $v.secretStore.existingSecret) -}}
{{- fail "secretStore.backend=embedded with PostgreSQL: every replica needs the same store key, so set secretStore.existingSecret (the secrets.key from `attestor init`), or use secretStore.backend=vault" -}}
{{- end -}}
{{- if include "edgeproof.vault" . -}}
{{- if not $v.vault.address -}}
{{- fail "issuer or secretStore.backend is vault: set vault.address (https://vault.example:8200)" -}}
{{- end -}}
{{- if and (eq $v.vault.auth "kubernetes") (not $v.vault.kubernetes.role) -}}
{{- fail "vault.auth=kubernetes needs vault.kubernetes.role (the Vault role bound to this release's service account)" -}}
{{- end -}}
{{- if and (eq $v.vault.auth "approle") (not (and $v.vault.approle.roleId $v.vault.approle.secretIdSecret)) -}}
{{- fail "vault.auth=approle needs vault.approle.roleId and vault.approle.secretIdSecret" -}}
{{- end -}}
{{- if and (eq $v.vault.auth "token") (not $v.vault.token.existingSecret) -}}
{{- fail "vault.auth=token needs vault.token.existingSecret (prefer vault.auth=kubernetes)" -}}
{{- end -}}
{{- end -}}
{{- if and $v.tls.existingSecret $v.tls.insecureHttp -}}
{{- fail "tls.existingSecret and tls.insecureHttp are both set: the attestor serves HTTPS with the certificate, or plain HTTP behind a TLS-terminating Ingress, not both" -}}
{{- end -}}
{{- if and (not $v.tls.existingSecret) (not $v.tls.insecureHttp) (not $v.attestor.dev) -}}
{{- fail "the attestor serves HTTPS only: set tls.existingSecret to a kubernetes.io/tls Secret (`attestor tls issue` makes one from the attestor's CA), or tls.insecureHttp=true behind an Ingress that terminates TLS" -}}
{{- end -}}
{{- if and $v.tls.clientCa.configMap (not $v.tls.existingSecret) -}}
{{- fail "tls.clientCa needs tls.existingSecret: client certificates are checked only when the attestor terminates TLS itself" -}}
{{- end -}}
{{- if and $v.metrics.prometheusRule.enabled (not (.Files.Get "files/monitoring/edgeproof-alerts.yml")) -}}
{{- fail "metrics.prometheusRule.enabled but the chart has no files/monitoring/edgeproof-alerts.yml (a link to deploy/monitoring/); package the chart from the repository" -}}
{{- end -}}
{{- if and $v.metrics.grafanaDashboard.enabled (not (.Files.Get "files/monitoring/edgeproof-dashboard.json")) -}}
{{- fail "metrics.grafanaDashboard.enabled but the chart has no files/monitoring/edgeproof-dashboard.json (a link to deploy/monitoring/); package the chart from the repository" -}}
{{- end -}}
{{- if and (or $v.metrics.serviceMonitor.enabled $v.metrics.prometheusRule.enabled) (not $v.metrics.enabled) -}}
{{- fail "metrics.serviceMonitor and metrics.prometheusRule need metrics.enabled (the attestor's metrics listener)" -}}
{{- end -}}
{{- end -}}
{{- if and $v.agent.enabled (not $v.agent.attestorUrls) (not $v.attestor.enabled) -}}
{{- fail "agent.enabled without the attestor in this release: set agent.attestorUrls" -}}
{{- end -}}
{{- if and $v.agent.enabled (not $v.agent.caBundle.configMap) (not $v.agent.caBundle.secret) -}}
{{- fail "agent.enabled needs agent.caBundle (a ConfigMap or Secret with the CA that signed the attestor's TLS certificate, e.g. `attestor ca` output): the agent verifies the attestor's certificate against it" -}}
{{- end -}}

{{- if $v.strict -}}
{{- if and $v.attestor.enabled $v.attestor.dev -}}
{{- fail "strict mode: attestor.dev=true runs `attestor serve --dev` (the built-in CA passphrase, plain HTTP). Set attestor.dev=false with ca.passphrase.existingSecret and tls.existingSecret, or strict=false for a development install (examples/dev.yaml)" -}}
{{- end -}}
{{- if and $v.attestor.enabled $sqlite (gt $replicas 1) -}}
{{- fail (printf "strict mode: SQLite with %d replicas (one database file cannot be shared by pods on several nodes). Set database.type=postgresql with database.existingSecret, or attestor.replicas=1" $replicas) -}}
{{- end -}}
{{- if and $v.attestor.enabled (not $sqlite) (lt $replicas 2) -}}
{{- fail (printf "strict mode: PostgreSQL with %d replica leaves no attestor while a node drains. Set attestor.replicas to 2 or more (or leave it unset)" $replicas) -}}
{{- end -}}
{{- if and $v.attestor.enabled $v.tls.insecureHttp (not (and $v.ingress.enabled $v.ingress.tls)) -}}
{{- fail "strict mode: tls.insecureHttp=true serves plain HTTP, allowed only behind an Ingress that terminates TLS. Set ingress.enabled=true with ingress.tls, or serve HTTPS with tls.existingSecret" -}}
{{- end -}}
{{- if $v.agent.enabled -}}
{{- range (include "edgeproof.agentUrls" . | fromJsonArray) -}}
{{- if hasPrefix "http://" . -}}
{{- fail (printf "strict mode: the agent would reach the attestor at %s, plain HTTP. Set agent.attestorUrls to https:// addresses (the Ingress's host when the attestor sits behind one)" .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
