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
