{{/*
Named templates of the outbox-relay chart.

"outbox-relay.container" is the public one: an application chart includes it to run the relay as a sidecar.
It reads only .Values (the relay's values), so the caller passes a dict holding them:

  containers:
    - name: app
      ...
    {{- include "outbox-relay.container" (dict "Values" .Values.outboxRelay) | nindent 4 }}

It renders one complete list item ("- name: outbox-relay ..."): indent it to the containers list.
*/}}

{{- define "outbox-relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "outbox-relay.fullname" -}}
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

{{- define "outbox-relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "outbox-relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The console's pods: a name of their own, so no selector of the relay's matches them. */}}
{{- define "outbox-relay.consoleSelectorLabels" -}}
app.kubernetes.io/name: {{ include "outbox-relay.name" . }}-console
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "outbox-relay.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "outbox-relay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "outbox-relay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "outbox-relay.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "outbox-relay.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- end }}
{{- end }}

{{/*
A whole number as the relay reads it: through int64 first, because Helm reads numbers as floats and 1000000
would otherwise print as 1e+06. "" stays "" (unset: the relay derives that default).
*/}}
{{- define "outbox-relay.int" -}}
{{- if kindIs "string" . }}{{ . | quote }}{{ else }}{{ . | int64 | quote }}{{ end }}
{{- end }}

{{/*
The relay's environment: one variable per key of src/config.ts's EnvSchema (test/helm-values.test.ts keeps
this list complete). Values reach the relay as strings; an empty one counts as unset.
*/}}
{{- define "outbox-relay.env" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "databaseUrlSecret.name is required: the Secret that holds DATABASE_URL" .Values.databaseUrlSecret.name | quote }}
      key: {{ required "databaseUrlSecret.key is required" .Values.databaseUrlSecret.key | quote }}
- name: WORKER_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: HTTP_PORT
  value: {{ .Values.config.httpPort | int64 | quote }}
- name: HTTP_HOST
  value: {{ .Values.config.httpHost | quote }}
{{- if .Values.metricsTokenSecret.name }}
- name: METRICS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.metricsTokenSecret.name | quote }}
      key: {{ required "metricsTokenSecret.key is required" .Values.metricsTokenSecret.key | quote }}
{{- end }}
- name: LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: ALLOW_PRIVATE_NETWORKS
  value: {{ .Values.config.allowPrivateNetworks | quote }}
- name: ALLOWED_CIDRS
  value: {{ join "," .Values.config.allowedCidrs | quote }}
- name: ALLOW_HTTP
  value: {{ .Values.config.allowHttp | quote }}
- name: CONNECT_TIMEOUT
  value: {{ .Values.config.connectTimeout | quote }}
- name: SLOT_NAME
  value: {{ .Values.config.slotName | quote }}
- name: PUBLICATION_NAME
  value: {{ .Values.config.publicationName | quote }}
- name: DELIVERY_CONCURRENCY
  value: {{ include "outbox-relay.int" .Values.config.deliveryConcurrency }}
- name: ENDPOINT_CONCURRENCY
  value: {{ .Values.config.endpointConcurrency | int64 | quote }}
- name: SCHEDULER_CAPACITY
  value: {{ include "outbox-relay.int" .Values.config.schedulerCapacity }}
- name: PAYLOAD_BUDGET
  value: {{ .Values.config.payloadBudget | quote }}
- name: CLAIM_BATCH
  value: {{ .Values.config.claimBatch | int64 | quote }}
- name: CLAIM_INTERVAL
  value: {{ .Values.config.claimInterval | quote }}
- name: FANOUT_BATCH
  value: {{ .Values.config.fanoutBatch | int64 | quote }}
- name: FANOUT_ROOM_WAIT
  value: {{ .Values.config.fanoutRoomWait | quote }}
- name: PERSIST_AFTER
  value: {{ .Values.config.persistAfter | quote }}
- name: LEASE
  value: {{ .Values.config.lease | quote }}
- name: HEARTBEAT_INTERVAL
  value: {{ .Values.config.heartbeatInterval | quote }}
- name: SWEEP_INTERVAL
  value: {{ .Values.config.sweepInterval | quote }}
- name: REQUEST_TIMEOUT
  value: {{ .Values.config.requestTimeout | quote }}
- name: MAX_RESPONSE_BYTES
  value: {{ .Values.config.maxResponseBytes | int64 | quote }}
- name: RETRY_SCHEDULE
  value: {{ join "," .Values.config.retrySchedule | quote }}
- name: RETRY_JITTER
  value: {{ .Values.config.retryJitter | quote }}
- name: RETRY_AFTER_MAX
  value: {{ .Values.config.retryAfterMax | quote }}
- name: STATUS_INTERVAL
  value: {{ .Values.config.statusInterval | quote }}
- name: STREAM_IDLE_TIMEOUT
  value: {{ .Values.config.streamIdleTimeout | quote }}
- name: STANDBY_RETRY_INTERVAL
  value: {{ .Values.config.standbyRetryInterval | quote }}
- name: MIGRATE_ON_START
  value: {{ .Values.config.migrateOnStart | quote }}
- name: SHUTDOWN_GRACE
  value: {{ .Values.config.shutdownGrace | quote }}
- name: AUTO_DISABLE_AFTER
  value: {{ .Values.config.autoDisableAfter | quote }}
- name: AUTO_DISABLE_AFTER_FAILURES
  value: {{ .Values.config.autoDisableAfterFailures | quote }}
- name: STATS_INTERVAL
  value: {{ .Values.config.statsInterval | quote }}
- name: CLUSTER_POLL_INTERVAL
  value: {{ .Values.config.clusterPollInterval | quote }}
- name: STATEMENT_TIMEOUT
  value: {{ .Values.config.statementTimeout | quote }}
- name: RETENTION_DELIVERED
  value: {{ .Values.config.retentionDelivered | quote }}
- name: RETENTION_DEAD
  value: {{ .Values.config.retentionDead | quote }}
- name: RETENTION_INTERVAL
  value: {{ .Values.config.retentionInterval | quote }}
- name: RETENTION_BATCH
  value: {{ .Values.config.retentionBatch | int64 | quote }}
- name: BREAKER_ERROR_THRESHOLD
  value: {{ .Values.config.breakerErrorThreshold | int64 | quote }}
- name: BREAKER_VOLUME_THRESHOLD
  value: {{ .Values.config.breakerVolumeThreshold | int64 | quote }}
- name: BREAKER_RESET_TIMEOUT
  value: {{ .Values.config.breakerResetTimeout | quote }}
- name: BREAKER_WINDOW
  value: {{ .Values.config.breakerWindow | quote }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The relay container, as one item of a pod's containers list. Used by templates/deployment.yaml (standalone)
and by application charts (sidecar). Reads only .Values.
*/}}
{{- define "outbox-relay.container" -}}
- name: outbox-relay
  image: {{ include "outbox-relay.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["run"]
  ports:
    - name: relay-http
      containerPort: {{ .Values.config.httpPort | int64 }}
      protocol: TCP
  env:
    {{- include "outbox-relay.env" . | nindent 4 }}
  startupProbe:
    httpGet:
      path: /healthz
      port: relay-http
    periodSeconds: {{ .Values.probes.startup.periodSeconds }}
    timeoutSeconds: {{ .Values.probes.startup.timeoutSeconds }}
    failureThreshold: {{ .Values.probes.startup.failureThreshold }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: relay-http
    periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
    timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
    failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: relay-http
    periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
    timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
    failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
