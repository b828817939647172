{{/* The audit log's background jobs (docs/audit.md): the SIEM forwarder, retention and
witness cosigning. They run the gateway's image with its settings, Secret, key mounts
and security context, so they see the same log with the same keys. */}}

{{- define "appliance.audit.settings" -}}
{{- (.Values.config | default dict).audit | default dict | toYaml -}}
{{- end -}}

{{/* "true" when config.audit.forward.host names a SIEM. */}}
{{- define "appliance.audit.forwarding" -}}
{{- $audit := include "appliance.audit.settings" . | fromYaml -}}
{{- if ($audit.forward | default dict).host }}true{{ end -}}
{{- end -}}

{{/* "true" when config.audit.witnesses lists at least one witness. */}}
{{- define "appliance.audit.witnessing" -}}
{{- $audit := include "appliance.audit.settings" . | fromYaml -}}
{{- if $audit.witnesses }}true{{ end -}}
{{- end -}}

{{/* The forwarder keeps its position in the database. Chart versions before that kept
it in a file on a PVC: with auditJobs.forward.importCursorClaim that claim is mounted
read-only here and audit.forward.cursor_file points into it, so the first run imports
the position (docs/helm.md). */}}
{{- define "appliance.audit.cursorDir" -}}/var/lib/appliance-forward{{- end -}}
{{- define "appliance.audit.siemTlsDir" -}}/var/run/appliance/siem-tls{{- end -}}

{{/* A CIDR for a literal IP address (a /32 or /128), empty for a host name. */}}
{{- define "appliance.audit.ipCidr" -}}
{{- if regexMatch "^[0-9]{1,3}(\\.[0-9]{1,3}){3}$" . }}{{ printf "%s/32" . }}
{{- else if and (contains ":" .) (regexMatch "^[0-9a-fA-F:.]+$" .) }}{{ printf "%s/128" . }}
{{- end -}}
{{- end -}}

{{/* The SIEM receiver as a NetworkPolicy peer: {protocol, port, cidrs} (YAML). The port
and protocol follow audit.forward (6514/TCP for tls, 514/TCP for tcp, 514/UDP for udp);
the address blocks are auditJobs.forward.cidrs, else the host itself when it is an IP. */}}
{{- define "appliance.audit.siemPeer" -}}
{{- $forward := (include "appliance.audit.settings" . | fromYaml).forward | default dict -}}
{{- $transport := $forward.transport | default "tls" -}}
{{- $port := $forward.port | default (ternary 6514 514 (eq $transport "tls")) -}}
{{- $cidrs := .Values.auditJobs.forward.cidrs | default list -}}
{{- if not $cidrs -}}
{{- with include "appliance.audit.ipCidr" (toString $forward.host) }}{{ $cidrs = list . }}{{ end -}}
{{- end -}}
{{- toYaml (dict "protocol" (ternary "UDP" "TCP" (eq $transport "udp")) "port" (int $port) "cidrs" $cidrs) -}}
{{- end -}}

{{/* One {url, port, cidrs} per configured witness (YAML list): the port from its URL
(443 for https, 80 for http unless named), the address blocks from
auditJobs.witness.addresses (by host name), else the host itself when it is an IP. */}}
{{- define "appliance.audit.witnessPeers" -}}
{{- $root := . -}}
{{- $peers := list -}}
{{- range ((include "appliance.audit.settings" . | fromYaml).witnesses | default list) -}}
{{- $url := urlParse (toString .url) -}}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" | default (ternary "80" "443" (eq $url.scheme "http")) -}}
{{- $cidrs := list -}}
{{- range $root.Values.auditJobs.witness.addresses -}}
{{- if eq .host $url.hostname }}{{ $cidrs = concat $cidrs .cidrs }}{{ end -}}
{{- end -}}
{{- if not $cidrs -}}
{{- with include "appliance.audit.ipCidr" $url.hostname }}{{ $cidrs = list . }}{{ end -}}
{{- end -}}
{{- $peers = append $peers (dict "url" (toString .url) "host" $url.hostname "port" (int $port) "cidrs" $cidrs) -}}
{{- end -}}
{{- toYaml $peers -}}
{{- end -}}

{{/* What the audit jobs' egress needs and the values do not say. A YAML list of messages. */}}
{{- define "appliance.audit.messages" -}}
{{- $messages := list -}}
{{- if .Values.networkPolicy.enabled -}}
{{- if include "appliance.audit.forwarding" . -}}
{{- $siem := include "appliance.audit.siemPeer" . | fromYaml -}}
{{- if not $siem.cidrs -}}
{{- $messages = append $messages "auditJobs.forward.cidrs: name the address blocks of the SIEM receiver (config.audit.forward.host is a host name; egress is never opened to any address)" -}}
{{- end -}}
{{- end -}}
{{- if include "appliance.audit.witnessing" . -}}
{{- range (include "appliance.audit.witnessPeers" . | fromYamlArray) -}}
{{- if not .cidrs -}}
{{- $messages = append $messages (printf "auditJobs.witness.addresses: add {host: %s, cidrs: [...]} for the witness %s (egress is never opened to any address)" .host .url) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $messages -}}
{{- end -}}

{{/* The pod spec every audit job runs: the gateway's image, environment, mounts and
security context. appliance.audit.podSpec (dict "root" $ "name" "retention" "command" list
"resources" dict "restartPolicy" "Never" "forwarder" bool "keys" bool); keys false leaves out
the audit key files and the HSM's PIN and module. */}}
{{- define "appliance.audit.podSpec" -}}
{{- $root := .root -}}
{{- $g := $root.Values.gateway -}}
{{- /* The forwarder reads metadata only: it gets no key material (keys false). */ -}}
{{- $keys := ne (toString .keys) "false" -}}
{{- $keyVolumes := list "secrets" "hsm-pin" "hsm-module" -}}
{{- with .restartPolicy }}
restartPolicy: {{ . }}
{{- end }}
{{- include "appliance.imagePullSecrets" $root }}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- include "appliance.podSecurityContext" (dict "runAsUser" $g.runAsUser) | nindent 2 }}
{{- with $g.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $g.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: {{ .name }}
    image: {{ include "appliance.image" (dict "image" $g.image "global" $root.Values.global) }}
    imagePullPolicy: {{ $g.image.pullPolicy }}
    command: {{ toJson .command }}
    env:
      {{- include "appliance.gateway.env" $root | nindent 6 }}
    resources:
      {{- toYaml .resources | nindent 6 }}
    securityContext:
      {{- include "appliance.containerSecurityContext" (dict "runAsUser" $g.runAsUser "readOnlyRootFilesystem" true) | nindent 6 }}
    volumeMounts:
      {{- range include "appliance.gateway.volumeMounts" $root | fromYamlArray }}
      {{- if or $keys (not (has .name $keyVolumes)) }}
      - {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- end }}
      {{- if .forwarder }}
      {{- if $root.Values.auditJobs.forward.importCursorClaim }}
      - name: forward-cursor
        mountPath: {{ include "appliance.audit.cursorDir" $root }}
        readOnly: true
      {{- end }}
      {{- with $root.Values.auditJobs.forward.tls.existingSecret }}
      - name: siem-tls
        mountPath: {{ include "appliance.audit.siemTlsDir" $root }}
        readOnly: true
      {{- end }}
      {{- end }}
volumes:
  {{- range include "appliance.gateway.volumes" (dict "root" $root "configSuffix" "") | fromYamlArray }}
  {{- if or $keys (not (has .name $keyVolumes)) }}
  - {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
  {{- if .forwarder }}
  {{- with $root.Values.auditJobs.forward.importCursorClaim }}
  - name: forward-cursor
    persistentVolumeClaim:
      claimName: {{ . }}
      readOnly: true
  {{- end }}
  {{- with $root.Values.auditJobs.forward.tls }}
  {{- if .existingSecret }}
  - name: siem-tls
    secret:
      secretName: {{ .existingSecret }}
      defaultMode: 0440
      items:
        - { key: ca.crt, path: ca.crt }
        {{- if .clientCertificate }}
        - { key: tls.crt, path: tls.crt }
        - { key: tls.key, path: tls.key }
        {{- end }}
  {{- end }}
  {{- end }}
  {{- end }}
{{- end -}}

{{/* A CronJob running one audit command. appliance.audit.cronJob (dict "root" $
"component" "audit-retention" "schedule" "..." "command" list) */}}
{{- define "appliance.audit.cronJob" -}}
{{- $root := .root -}}
{{- $jobs := $root.Values.auditJobs -}}
apiVersion: batch/v1
kind: CronJob
metadata:
  name: {{ include "appliance.componentname" (dict "root" $root "component" .component) }}
  labels:
    {{- include "appliance.labels" (dict "root" $root "component" .component) | nindent 4 }}
spec:
  schedule: {{ .schedule | quote }}
  {{- with $jobs.timeZone }}
  timeZone: {{ . | quote }}
  {{- end }}
  concurrencyPolicy: Forbid
  startingDeadlineSeconds: {{ .startingDeadlineSeconds }}
  successfulJobsHistoryLimit: {{ $jobs.successfulJobsHistoryLimit }}
  failedJobsHistoryLimit: {{ $jobs.failedJobsHistoryLimit }}
  jobTemplate:
    metadata:
      labels:
        {{- include "appliance.labels" (dict "root" $root "component" .component) | nindent 8 }}
    spec:
      backoffLimit: {{ $jobs.backoffLimit }}
      {{- with $jobs.activeDeadlineSeconds }}
      activeDeadlineSeconds: {{ . }}
      {{- end }}
      template:
        metadata:
          labels:
            {{- include "appliance.labels" (dict "root" $root "component" .component) | nindent 12 }}
        spec:
          {{- include "appliance.audit.podSpec" (dict "root" $root "name" (trimPrefix "audit-" .component) "command" .command "resources" $jobs.resources "restartPolicy" "Never") | nindent 10 }}
{{- end -}}
