{{- define "appliance.config.yaml" -}}
{{- /* appliance.yaml for the gateway and the migrations Job: the admin's settings plus what the chart owns. No secrets: those arrive as environment from the existing Secret. */ -}}
{{- $config := deepCopy (.Values.config | default dict) -}}
{{- $_ := set $config "data_dir" "/var/lib/appliance" -}}
{{- $engine := $config.engine | default dict -}}
{{- $_ := set $engine "enabled" false -}}
{{- $_ := set $engine "served_model_name" .Values.engine.model.servedModelName -}}
{{- if .Values.engine.adapters.enabled -}}
{{- /* The adapters' base directory name in the store (mounted at <data_dir>/models/adapters). */ -}}
{{- $_ := set $engine "model_dir" (printf "/var/lib/appliance/models/%s" (include "appliance.adapters.storeName" .)) -}}
{{- end -}}
{{- $_ := set $config "engine" $engine -}}
{{- $embedding := $config.embedding_engine | default dict -}}
{{- $_ := set $embedding "enabled" false -}}
{{- $_ := set $config "embedding_engine" $embedding -}}
{{- $gateway := $config.gateway | default dict -}}
{{- $_ := set $gateway "host" "0.0.0.0" -}}
{{- $_ := set $gateway "port" (int .Values.gateway.port) -}}
{{- $_ := set $gateway "workers" (ternary "auto" (int .Values.gateway.workers) (eq (toString .Values.gateway.workers) "auto")) -}}
{{- $upstreams := list (dict "model" .Values.engine.model.servedModelName "url" (include "appliance.engine.url" .)) -}}
{{- if .Values.embeddingEngine.enabled -}}
{{- $upstreams = append $upstreams (dict "model" .Values.embeddingEngine.model.servedModelName "url" (include "appliance.embeddingEngine.url" .) "kind" "embedding") -}}
{{- end -}}
{{- $_ := set $gateway "upstreams" $upstreams -}}
{{- if .Values.gateway.engineTls.existingSecret -}}
{{- $dir := "/var/run/appliance/engine-tls" -}}
{{- $_ := set $gateway "engine_tls" (dict "ca_file" (printf "%s/ca.crt" $dir) "cert_file" (printf "%s/tls.crt" $dir) "key_file" (printf "%s/tls.key" $dir)) -}}
{{- end -}}
{{- $_ := set $config "gateway" $gateway -}}
{{- $audit := $config.audit | default dict -}}
{{- $hsm := .Values.gateway.hsm -}}
{{- if $hsm.enabled -}}
{{- /* Both keys in the token: no key file in the pod; the PIN from a Secret (docs/audit.md, "Keys in an HSM"). */ -}}
{{- $token := dict "module" $hsm.module "token_label" $hsm.tokenLabel "pin_file" "/var/run/appliance/hsm/pin" "algorithm" $hsm.algorithm -}}
{{- $_ := set $audit "keys" (dict "backend" "pkcs11" "pkcs11" $token) -}}
{{- else -}}
{{- $_ := set $audit "master_key_file" "/var/run/appliance/secrets/audit_master_key" -}}
{{- $_ := set $audit "signing_key_file" "/var/run/appliance/secrets/audit_signing_key" -}}
{{- end -}}
{{- if ($audit.forward | default dict).host -}}
{{- /* The SIEM forwarder's cursor is a database row; an old cursor file is imported from auditJobs.forward.importCursorClaim (templates/audit/_audit.tpl). The SIEM TLS files come from auditJobs.forward.tls. */ -}}
{{- $forward := $audit.forward -}}
{{- if .Values.auditJobs.forward.importCursorClaim -}}
{{- $_ := set $forward "cursor_file" (printf "%s/audit_forward_cursor.json" (include "appliance.audit.cursorDir" .)) -}}
{{- end -}}
{{- $siemTls := .Values.auditJobs.forward.tls -}}
{{- if $siemTls.existingSecret -}}
{{- $dir := include "appliance.audit.siemTlsDir" . -}}
{{- $_ := set $forward "ca_file" (printf "%s/ca.crt" $dir) -}}
{{- if $siemTls.clientCertificate -}}
{{- $_ := set $forward "cert_file" (printf "%s/tls.crt" $dir) -}}
{{- $_ := set $forward "key_file" (printf "%s/tls.key" $dir) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if .Values.gateway.auditSpool.enabled -}}
{{- /* The spool on each pod's own volume (templates/gateway/statefulset.yaml); the admin's other spool settings (max_bytes, ...) are kept. */ -}}
{{- $spool := $audit.spool | default dict -}}
{{- $_ := set $spool "enabled" true -}}
{{- $_ := set $spool "directory" .Values.gateway.auditSpool.mountPath -}}
{{- $_ := set $audit "spool" $spool -}}
{{- end -}}
{{- $_ := set $config "audit" $audit -}}
{{- if .Values.keycloak.enabled -}}
{{- $oidc := $config.oidc | default dict -}}
{{- $_ := set $oidc "enabled" true -}}
{{- $_ := set $oidc "server_url" .Values.keycloak.url -}}
{{- $_ := set $oidc "realm" .Values.keycloak.realm -}}
{{- with .Values.gateway.publicUrl }}{{ $_ := set $oidc "public_url" . }}{{ end -}}
{{- $_ := set $config "oidc" $oidc -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Migrations run before install against an external database; after install when the bundled one starts with the release. */}}
{{- define "appliance.migrations.hooks" -}}
{{- if .Values.postgresql.bundled.enabled }}post-install,pre-upgrade{{ else }}pre-install,pre-upgrade{{ end -}}
{{- end -}}
