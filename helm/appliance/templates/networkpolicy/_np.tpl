{{/* A peer selecting one component of this release. appliance.np.peer (dict "root" $ "component" "gateway") */}}
{{- define "appliance.np.peer" -}}
- podSelector:
    matchLabels:
      {{- include "appliance.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/* An external peer: pods in a namespace, an address block, or (neither) any address on the port. */}}
{{- define "appliance.np.external" -}}
{{- if .namespace }}
to:
  - namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: {{ .namespace }}
{{- else if .cidr }}
to:
  - ipBlock:
      cidr: {{ .cidr }}
{{- end }}
ports:
  - protocol: TCP
    port: {{ .port }}
{{- end -}}

{{- define "appliance.np.database" -}}
{{- if .Values.postgresql.bundled.enabled }}
- to:
    {{- include "appliance.np.peer" (dict "root" . "component" "postgresql") | nindent 4 }}
  ports:
    - protocol: TCP
      port: 5432
{{- else }}
- {{- include "appliance.np.external" (dict "cidr" .Values.postgresql.external.cidr "port" .Values.postgresql.external.port) | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "appliance.np.enginePorts" -}}
- protocol: TCP
  port: {{ .Values.engine.masterPort }}
- protocol: TCP
  port: {{ .Values.engine.dataParallelRpcPort }}
{{- range .Values.engine.interNodePorts }}
- protocol: TCP
  port: {{ .port }}
  {{- with .endPort }}
  endPort: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* Egress for one external provider (config.external_providers, issue #17): its CIDRs on
base_url's port (443 unless it names one), or its egress proxy's CIDRs on the proxy's
port (ProviderSettings.egress_port). Used by the gateway's policy only. The port is the
digits after the last colon of the URL's host: a colon inside an IPv6 literal is
followed by "]", never by the end. */}}
{{- define "appliance.np.provider" -}}
{{- $egress := .egress | default dict -}}
{{- $cidrs := $egress.cidrs | default list -}}
{{- $port := regexFind ":[0-9]+$" (urlParse (.base_url | default "")).host | trimPrefix ":" | default "443" -}}
{{- if $egress.proxy_url -}}
{{- $cidrs = $egress.proxy_cidrs | default list -}}
{{- $port = regexFind ":[0-9]+$" (urlParse $egress.proxy_url).host | trimPrefix ":" | required (printf "config.external_providers %s: egress.proxy_url must name its port" .name) -}}
{{- end -}}
{{- if not $cidrs -}}
{{- fail (printf "config.external_providers %s: egress.cidrs or egress.proxy_url with egress.proxy_cidrs is required" .name) -}}
{{- end -}}
# external provider {{ .name }}{{ if $egress.proxy_url }} via {{ $egress.proxy_url }}{{ end }}
- to:
    {{- range $cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    - protocol: TCP
      port: {{ $port }}
{{- end -}}
