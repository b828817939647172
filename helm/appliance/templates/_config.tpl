{{- define "appliance.config.yaml" -}}
{{- /* appliance.yaml for the gateway and the migrations Job: the admin's settings plus what the chart owns. No secrets: those arrive as environment from the existing Secret. */ -}}
{{- $config := deepCopy (.Values.config | default dict) -}}
{{- $_ := set $config "data_dir" "/var/lib/appliance" -}}
{{- $engine := $config.engine | default dict -}}
{{- $_ := set $engine "enabled" false -}}
{{- $_ := set $engine "served_model_name" .Values.engine.model.servedModelName -}}
{{- $_ := set $config "engine" $engine -}}
{{- $gateway := $config.gateway | default dict -}}
{{- $_ := set $gateway "host" "0.0.0.0" -}}
{{- $_ := set $gateway "port" (int .Values.gateway.port) -}}
{{- $_ := set $gateway "upstreams" (list (dict "model" .Values.engine.model.servedModelName "url" (include "appliance.engine.url" .))) -}}
{{- if .Values.gateway.engineTls.existingSecret -}}
{{- $dir := "/var/run/appliance/engine-tls" -}}
{{- $_ := set $gateway "engine_tls" (dict "ca_file" (printf "%s/ca.crt" $dir) "cert_file" (printf "%s/tls.crt" $dir) "key_file" (printf "%s/tls.key" $dir)) -}}
{{- end -}}
{{- $_ := set $config "gateway" $gateway -}}
{{- $audit := $config.audit | default dict -}}
{{- $_ := set $audit "master_key_file" "/var/run/appliance/secrets/audit_master_key" -}}
{{- $_ := set $audit "signing_key_file" "/var/run/appliance/secrets/audit_signing_key" -}}
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
