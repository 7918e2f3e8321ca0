{{/* The attestor pod's environment, mounts and volumes, shared by the serving container and
the SQLite init containers. Layout (README "Files in the pod"):

  /var/lib/edgeproof                 data dir: the PVC with SQLite; with PostgreSQL nothing
                                     (read-only image directory: nothing is written there)
  /var/lib/edgeproof/ca              Secret ca.existingSecret: root.pem issuing.pem issuing.key
                                     signing.key (never root.key: it stays offline)
  /var/lib/edgeproof/trust/ek-roots  ConfigMap trustStore.configMap (re-read when it changes)
  /etc/edgeproof/config              ConfigMap: attestor.toml ($EDGEPROOF_CONFIG)
  /etc/edgeproof/ca-passphrase       Secret ca.passphrase.existingSecret
  /etc/edgeproof/secret-store        Secret secretStore.existingSecret: secrets.key
  /etc/edgeproof/tls, tls-client-ca  Secret tls.existingSecret, ConfigMap tls.clientCa
  /etc/edgeproof/vault-*             Vault CA bundle, token or AppRole secret_id
  /var/run/secrets/edgeproof/vault   projected service-account token for Vault's Kubernetes auth
*/}}

{{- define "edgeproof.attestorEnv" -}}
{{- $p := include "edgeproof.paths" . | fromYaml -}}
- name: EDGEPROOF_DATA_DIR
  value: {{ $p.dataDir }}
- name: EDGEPROOF_CONFIG
  value: {{ $p.config }}
{{- if not (include "edgeproof.sqlite" .) }}
- name: EDGEPROOF_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret }}
      key: {{ .Values.database.key }}
{{- end }}
{{- end -}}

{{- define "edgeproof.attestorMounts" -}}
{{- $p := include "edgeproof.paths" . | fromYaml -}}
{{- $v := .Values -}}
{{- if include "edgeproof.sqlite" . }}
- name: data
  mountPath: {{ $p.dataDir }}
{{- end }}
- name: config
  mountPath: {{ dir $p.config }}
  readOnly: true
{{- if $v.ca.existingSecret }}
- name: ca
  mountPath: {{ $p.dataDir }}/ca
  readOnly: true
{{- end }}
{{- if $v.trustStore.configMap }}
- name: ek-roots
  mountPath: {{ $p.dataDir }}/trust/ek-roots
  readOnly: true
{{- end }}
{{- if $v.ca.passphrase.existingSecret }}
- name: ca-passphrase
  mountPath: {{ dir $p.passphrase }}
  readOnly: true
{{- end }}
{{- if and (eq $v.secretStore.backend "embedded") $v.secretStore.existingSecret }}
- name: secret-store
  mountPath: {{ dir $p.secretStoreKey }}
  readOnly: true
{{- end }}
{{- if $v.tls.existingSecret }}
- name: tls
  mountPath: {{ $p.tls }}
  readOnly: true
{{- end }}
{{- if and $v.tls.existingSecret $v.tls.clientCa.configMap }}
- name: tls-client-ca
  mountPath: {{ dir $p.clientCa }}
  readOnly: true
{{- end }}
{{- if include "edgeproof.vault" . }}
{{- if or $v.vault.caBundle.configMap $v.vault.caBundle.secret }}
- name: vault-ca
  mountPath: {{ dir $p.vaultCa }}
  readOnly: true
{{- end }}
{{- if eq $v.vault.auth "kubernetes" }}
- name: vault-jwt
  mountPath: {{ dir $p.vaultJwt }}
  readOnly: true
{{- else if eq $v.vault.auth "approle" }}
- name: vault-approle
  mountPath: {{ dir $p.vaultSecretId }}
  readOnly: true
{{- else }}
- name: vault-token
  mountPath: {{ dir $p.vaultToken }}
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{- define "edgeproof.attestorVolumes" -}}
{{- $p := include "edgeproof.paths" . | fromYaml -}}
{{- $v := .Values -}}
{{- if include "edgeproof.sqlite" . }}
- name: data
  persistentVolumeClaim:
    claimName: {{ $v.database.sqlite.persistence.existingClaim | default (printf "%s-data" (include "edgeproof.fullname" .)) }}
{{- end }}
- name: config
  configMap:
    name: {{ include "edgeproof.fullname" . }}
{{- if $v.ca.existingSecret }}
- name: ca
  secret:
    secretName: {{ $v.ca.existingSecret }}
    defaultMode: 0440
    # Only what serving needs; a missing key stops the pod with a clear event.
    items:
      {{- range list "root.pem" "issuing.pem" "issuing.key" "signing.key" }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- end }}
{{- if $v.trustStore.configMap }}
- name: ek-roots
  configMap:
    name: {{ $v.trustStore.configMap }}
{{- end }}
{{- if $v.ca.passphrase.existingSecret }}
- name: ca-passphrase
  secret:
    secretName: {{ $v.ca.passphrase.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $v.ca.passphrase.key }}
        path: {{ base $p.passphrase }}
{{- end }}
{{- if and (eq $v.secretStore.backend "embedded") $v.secretStore.existingSecret }}
- name: secret-store
  secret:
    secretName: {{ $v.secretStore.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $v.secretStore.key }}
        path: {{ base $p.secretStoreKey }}
{{- end }}
{{- if $v.tls.existingSecret }}
- name: tls
  secret:
    secretName: {{ $v.tls.existingSecret }}
    defaultMode: 0440
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- if and $v.tls.existingSecret $v.tls.clientCa.configMap }}
- name: tls-client-ca
  configMap:
    name: {{ $v.tls.clientCa.configMap }}
    items:
      - key: {{ $v.tls.clientCa.key }}
        path: {{ base $p.clientCa }}
{{- end }}
{{- if include "edgeproof.vault" . }}
{{- if $v.vault.caBundle.configMap }}
- name: vault-ca
  configMap:
    name: {{ $v.vault.caBundle.configMap }}
    items:
      - key: {{ $v.vault.caBundle.key }}
        path: {{ base $p.vaultCa }}
{{- else if $v.vault.caBundle.secret }}
- name: vault-ca
  secret:
    secretName: {{ $v.vault.caBundle.secret }}
    items:
      - key: {{ $v.vault.caBundle.key }}
        path: {{ base $p.vaultCa }}
{{- end }}
{{- if eq $v.vault.auth "kubernetes" }}
- name: vault-jwt
  projected:
    defaultMode: 0440
    sources:
      # Bound to Vault's audience and short-lived; the kubelet rotates it and the attestor
      # reads it again at every login.
      - serviceAccountToken:
          audience: {{ $v.vault.kubernetes.audience }}
          expirationSeconds: {{ $v.vault.kubernetes.tokenExpirationSeconds | int }}
          path: {{ base $p.vaultJwt }}
{{- else if eq $v.vault.auth "approle" }}
- name: vault-approle
  secret:
    secretName: {{ $v.vault.approle.secretIdSecret }}
    defaultMode: 0440
    items:
      - key: {{ $v.vault.approle.secretIdKey }}
        path: {{ base $p.vaultSecretId }}
{{- else }}
- name: vault-token
  secret:
    secretName: {{ $v.vault.token.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $v.vault.token.key }}
        path: {{ base $p.vaultToken }}
{{- end }}
{{- end }}
{{- end -}}
