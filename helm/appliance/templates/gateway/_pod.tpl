{{/* The gateway's environment: secrets only by reference. appliance.gateway.env $ */}}
{{- define "appliance.gateway.env" -}}
{{- $secret := include "appliance.secretName" . -}}
{{- $keys := .Values.secrets.keys -}}
- name: APPLIANCE_CONFIG
  value: /etc/appliance/appliance.yaml
- name: APPLIANCE_DATABASE__URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.databaseUrl }}
- name: APPLIANCE_ENGINE__API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.engineApiKey }}
- name: APPLIANCE_AUTH__API_KEY_PEPPER
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.apiKeyPepper }}
{{- if .Values.keycloak.enabled }}
- name: APPLIANCE_OIDC__GATEWAY_CLIENT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.oidcGatewayClientSecret }}
      optional: true
{{- end }}
{{- if .Values.gateway.hsm.enabled }}
{{- range .Values.gateway.hsm.env }}
- name: {{ .name }}
  value: {{ .value | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The gateway pod (metadata and spec), for the Deployment or, with the audit spool,
the StatefulSet: one template so the two cannot drift. appliance.gateway.podTemplate $ */}}
{{- define "appliance.gateway.podTemplate" -}}
metadata:
  labels:
    {{- include "appliance.labels" (dict "root" . "component" "gateway") | nindent 4 }}
  annotations:
    checksum/config: {{ include "appliance.config.yaml" . | sha256sum }}
spec:
  {{- include "appliance.imagePullSecrets" . | nindent 2 }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  securityContext:
    {{- include "appliance.podSecurityContext" (dict "runAsUser" .Values.gateway.runAsUser) | nindent 4 }}
  {{- with .Values.gateway.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.gateway.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.gateway.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: gateway
      image: {{ include "appliance.image" (dict "image" .Values.gateway.image "global" .Values.global) }}
      imagePullPolicy: {{ .Values.gateway.image.pullPolicy }}
      command: ["appliance", "serve"]
      env:
        {{- include "appliance.gateway.env" . | nindent 8 }}
      ports:
        - name: http
          containerPort: {{ .Values.gateway.port }}
          protocol: TCP
      startupProbe:
        httpGet:
          path: /healthz
          port: http
        periodSeconds: 5
        failureThreshold: 24
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
        periodSeconds: 10
        failureThreshold: 3
        timeoutSeconds: 5
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        periodSeconds: 20
        failureThreshold: 3
        timeoutSeconds: 5
      resources:
        {{- toYaml .Values.gateway.resources | nindent 8 }}
      securityContext:
        {{- include "appliance.containerSecurityContext" (dict "runAsUser" .Values.gateway.runAsUser "readOnlyRootFilesystem" true) | nindent 8 }}
      volumeMounts:
        {{- include "appliance.gateway.volumeMounts" . | nindent 8 }}
        {{- with include "appliance.gateway.providerSecretMounts" . }}
        # The Secrets external providers' credentials name (config.external_providers).
        {{- . | trim | nindent 8 }}
        {{- end }}
        {{- if .Values.engine.adapters.enabled }}
        # The adapter catalogue (manifests, teams) and the files runtime loads verify.
        {{- include "appliance.adapters.volumeMount" (dict "root" . "volume" "adapters") | nindent 8 }}
        {{- end }}
        {{- if .Values.gateway.auditSpool.enabled }}
        # The audit spool: this pod's own claim (the StatefulSet's volumeClaimTemplates),
        # so records acknowledged before a crash are still there to replay at the restart.
        - name: audit-spool
          mountPath: {{ .Values.gateway.auditSpool.mountPath }}
        {{- end }}
  volumes:
    {{- include "appliance.gateway.volumes" (dict "root" . "configSuffix" "") | nindent 4 }}
    {{- with include "appliance.gateway.providerSecretVolumes" . }}
    {{- . | trim | nindent 4 }}
    {{- end }}
    {{- if .Values.engine.adapters.enabled }}
    {{- include "appliance.adapters.volume" . | nindent 4 }}
    {{- end }}
{{- end -}}

{{- define "appliance.gateway.volumeMounts" -}}
- name: config
  mountPath: /etc/appliance
  readOnly: true
{{- if .Values.gateway.hsm.enabled }}
- name: hsm-pin
  mountPath: /var/run/appliance/hsm
  readOnly: true
{{- if .Values.gateway.hsm.moduleHostPath }}
- name: hsm-module
  mountPath: /opt/hsm
  readOnly: true
{{- end }}
{{- else }}
- name: secrets
  mountPath: /var/run/appliance/secrets
  readOnly: true
{{- end }}
- name: data
  mountPath: /var/lib/appliance
- name: tmp
  mountPath: /tmp
{{- if .Values.gateway.engineTls.existingSecret }}
- name: engine-tls
  mountPath: /var/run/appliance/engine-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "appliance.gateway.volumes" -}}
{{- $root := .root -}}
- name: config
  configMap:
    name: {{ include "appliance.componentname" (dict "root" $root "component" (printf "config%s" .configSuffix)) }}
{{- $hsm := $root.Values.gateway.hsm }}
{{- if $hsm.enabled }}
- name: hsm-pin
  secret:
    secretName: {{ $hsm.pinSecret.name | default (include "appliance.secretName" $root) }}
    defaultMode: 0400
    items:
      - key: {{ $hsm.pinSecret.key }}
        path: pin
{{- with $hsm.moduleHostPath }}
- name: hsm-module
  hostPath:
    path: {{ . }}
    type: Directory
{{- end }}
{{- else }}
- name: secrets
  secret:
    secretName: {{ include "appliance.secretName" $root }}
    defaultMode: 0400
    items:
      - key: {{ $root.Values.secrets.keys.auditMasterKey }}
        path: audit_master_key
      - key: {{ $root.Values.secrets.keys.auditSigningKey }}
        path: audit_signing_key
{{- end }}
- name: data
  emptyDir:
    sizeLimit: 1Gi
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- with $root.Values.gateway.engineTls.existingSecret }}
- name: engine-tls
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - { key: tls.crt, path: tls.crt }
      - { key: tls.key, path: tls.key }
      - { key: ca.crt, path: ca.crt }
{{- end }}
{{- end -}}

{{/* The Kubernetes Secrets external providers' credentials name (config.external_providers,
credential.secret_name and secret_key), as YAML {secret name: [keys]}; {} when none.
ProviderCredential.file() reads <PROVIDER_SECRETS_DIR>/<secret name>/<key>. */}}
{{- define "appliance.gateway.providerSecrets" -}}
{{- $secrets := dict -}}
{{- range ((.Values.config | default dict).external_providers | default list) -}}
{{- $credential := .credential | default dict -}}
{{- if and $credential.secret_name $credential.secret_key -}}
{{- $keys := get $secrets $credential.secret_name | default list -}}
{{- $_ := set $secrets $credential.secret_name (append $keys $credential.secret_key | uniq | sortAlpha) -}}
{{- end -}}
{{- end -}}
{{- toYaml $secrets -}}
{{- end -}}

{{/* One read-only mount per distinct Secret, at /var/run/appliance/provider-secrets/<name>
(appliance.settings.egress.PROVIDER_SECRETS_DIR); nothing when no credential names one.
The gateway container only: the migrations and audit jobs never call a provider. */}}
{{- define "appliance.gateway.providerSecretMounts" -}}
{{- $secrets := include "appliance.gateway.providerSecrets" . | fromYaml -}}
{{- range $i, $name := keys $secrets | sortAlpha }}
- name: provider-secret-{{ $i }}
  mountPath: /var/run/appliance/provider-secrets/{{ $name }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* The volumes for those mounts: only the keys the credentials name, 0400 like the
audit keys (the pod's fsGroup, the gateway's own group, makes them group-readable).
Volumes are numbered: a Secret's name may be longer than a volume name may be. */}}
{{- define "appliance.gateway.providerSecretVolumes" -}}
{{- $secrets := include "appliance.gateway.providerSecrets" . | fromYaml -}}
{{- range $i, $name := keys $secrets | sortAlpha }}
- name: provider-secret-{{ $i }}
  secret:
    secretName: {{ $name }}
    defaultMode: 0400
    items:
      {{- range get $secrets $name }}
      - key: {{ . | quote }}
        path: {{ . | quote }}
      {{- end }}
{{- end }}
{{- end -}}
