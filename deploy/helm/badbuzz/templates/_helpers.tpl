{{/* Names and labels, as in most community charts. */}}
{{- define "badbuzz.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "badbuzz.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's name: "<fullname>-<component>", e.g. release-badbuzz-worker. */}}
{{- define "badbuzz.componentName" -}}
{{- printf "%s-%s" (include "badbuzz.fullname" .root | trunc 50 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "badbuzz.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "badbuzz.selectorLabels" -}}
app.kubernetes.io/name: {{ include "badbuzz.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Call with (dict "root" $ "component" "worker"). */}}
{{- define "badbuzz.labels" -}}
helm.sh/chart: {{ include "badbuzz.chart" .root }}
{{ include "badbuzz.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: badbuzz
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* An image reference from (dict "image" .Values.image "root" $). */}}
{{- define "badbuzz.image" -}}
{{- $registry := .image.registry | default .root.Values.global.imageRegistry -}}
{{- $repository := ternary .image.repository (printf "%s/%s" $registry .image.repository) (empty $registry) -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (.image.tag | default .root.Chart.AppVersion | toString) -}}
{{- end -}}
{{- end -}}

{{- define "badbuzz.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "badbuzz.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "badbuzz.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "badbuzz.configMapName" -}}
{{- include "badbuzz.componentName" (dict "root" . "component" "config") -}}
{{- end -}}

{{- define "badbuzz.mlflow.serviceName" -}}
{{- include "badbuzz.componentName" (dict "root" . "component" "mlflow") -}}
{{- end -}}

{{- define "badbuzz.trackingUri" -}}
{{- if .Values.mlflow.enabled -}}
{{- printf "http://%s:%v" (include "badbuzz.mlflow.serviceName" .) .Values.mlflow.port -}}
{{- else -}}
{{- required "mlflow.externalUri is required when mlflow.enabled is false (the MLflow server the registry lives on)" .Values.mlflow.externalUri -}}
{{- end -}}
{{- end -}}

{{- define "badbuzz.kafka.tlsDir" -}}/etc/badbuzz/kafka-tls{{- end -}}
{{- define "badbuzz.redis.tlsDir" -}}/etc/badbuzz/redis-tls{{- end -}}

{{/* The settings the chart derives from its structured values, as a YAML map. */}}
{{- define "badbuzz.derivedEnv" -}}
BADBUZZ_KAFKA_BOOTSTRAP: {{ .Values.kafka.bootstrapServers | quote }}
BADBUZZ_KAFKA_SECURITY_PROTOCOL: {{ .Values.kafka.securityProtocol | quote }}
{{- if hasPrefix "SASL" .Values.kafka.securityProtocol }}
BADBUZZ_KAFKA_SASL_MECHANISM: {{ .Values.kafka.sasl.mechanism | quote }}
BADBUZZ_KAFKA_SASL_USERNAME: {{ required "kafka.sasl.username is required with a SASL security protocol" .Values.kafka.sasl.username | quote }}
{{- end }}
{{- with .Values.kafka.tls }}
{{- if .existingSecret }}
{{- if .caKey }}
BADBUZZ_KAFKA_SSL_CAFILE: {{ printf "%s/%s" (include "badbuzz.kafka.tlsDir" $) .caKey | quote }}
{{- end }}
{{- if .certKey }}
BADBUZZ_KAFKA_SSL_CERTFILE: {{ printf "%s/%s" (include "badbuzz.kafka.tlsDir" $) .certKey | quote }}
{{- end }}
{{- if .keyKey }}
BADBUZZ_KAFKA_SSL_KEYFILE: {{ printf "%s/%s" (include "badbuzz.kafka.tlsDir" $) .keyKey | quote }}
{{- end }}
{{- end }}
{{- end }}
BADBUZZ_REDIS_URL: {{ .Values.redis.url | quote }}
BADBUZZ_REDIS_MODE: {{ .Values.redis.mode | quote }}
{{- if eq .Values.redis.mode "sentinel" }}
BADBUZZ_REDIS_SENTINELS: {{ join "," .Values.redis.sentinels | quote }}
BADBUZZ_REDIS_SENTINEL_MASTER: {{ .Values.redis.sentinelMaster | quote }}
{{- end }}
{{- if .Values.redis.tls.existingSecret }}
BADBUZZ_REDIS_SSL_CA_FILE: {{ printf "%s/%s" (include "badbuzz.redis.tlsDir" .) .Values.redis.tls.caKey | quote }}
{{- end }}
BADBUZZ_TOPIC_RAW: {{ .Values.topics.names.raw | quote }}
BADBUZZ_TOPIC_DLQ: {{ .Values.topics.names.dlq | quote }}
BADBUZZ_TOPIC_ALERTS: {{ .Values.topics.names.alerts | quote }}
BADBUZZ_TOPIC_FEEDBACK: {{ .Values.topics.names.feedback | quote }}
BADBUZZ_TOPIC_PARTITIONS: {{ .Values.topics.partitions | quote }}
BADBUZZ_TOPIC_REPLICATION_FACTOR: {{ .Values.topics.replicationFactor | quote }}
BADBUZZ_TOPIC_MIN_INSYNC_REPLICAS: {{ .Values.topics.minInsyncReplicas | quote }}
BADBUZZ_APP_ID: {{ .Values.appId | quote }}
BADBUZZ_WEB_HOST: "0.0.0.0"
BADBUZZ_WEB_PORT: {{ .Values.worker.containerPorts.http | quote }}
BADBUZZ_HOME: {{ .Values.worker.home.mountPath | quote }}
MLFLOW_TRACKING_URI: {{ include "badbuzz.trackingUri" . | quote }}
{{- if .Values.console.enabled }}
BADBUZZ_CONSOLE_HOST: "0.0.0.0"
BADBUZZ_CONSOLE_PORT: {{ .Values.console.containerPorts.http | quote }}
BADBUZZ_CONSOLE_COOKIE_SECURE: {{ .Values.console.cookieSecure | quote }}
{{- end }}
{{- end -}}

{{/* Every setting: the derived ones and .Values.config, which may not redefine them. */}}
{{- define "badbuzz.settings" -}}
{{- $derived := include "badbuzz.derivedEnv" . | fromYaml -}}
{{- $settings := dict -}}
{{- range $name, $value := .Values.config -}}
{{- if hasKey $derived $name -}}
{{- fail (printf "config.%s is set by the chart from its own values (kafka.*, redis.*, topics.*, appId, worker.*, mlflow.*, console.*): set it there" $name) -}}
{{- end -}}
{{- $secretKeys := merge (dict) $.Values.secrets.keys $.Values.secrets.consoleKeys -}}
{{- if hasKey $secretKeys $name -}}
{{- fail (printf "config.%s is a secret: put it in the Secret named by secrets.existingSecret (key %s)" $name (get $secretKeys $name)) -}}
{{- end -}}
{{- $_ := set $settings $name (toString $value) -}}
{{- end -}}
{{- toYaml (merge $settings $derived) -}}
{{- end -}}

{{/* The settings as container env entries (hook Jobs run before the ConfigMap exists). */}}
{{- define "badbuzz.settingsEnv" -}}
{{- $settings := include "badbuzz.settings" . | fromYaml -}}
{{- range $name := keys $settings | sortAlpha }}
- name: {{ $name }}
  value: {{ get $settings $name | toString | quote }}
{{- end }}
{{- end -}}

{{/* Secret variables, each from its key of secrets.existingSecret. */}}
{{- define "badbuzz.secretEnv" -}}
{{- include "badbuzz.secretKeyEnv" (dict "secret" .Values.secrets.existingSecret "keys" .Values.secrets.keys) }}
{{- end -}}

{{- define "badbuzz.consoleSecretEnv" -}}
{{- include "badbuzz.secretKeyEnv" (dict "secret" .Values.secrets.existingSecret "keys" .Values.secrets.consoleKeys) }}
{{- end -}}

{{- define "badbuzz.secretKeyEnv" -}}
{{- if .secret }}
{{- range $name, $key := .keys }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $.secret }}
      key: {{ $key }}
      optional: true
{{- end }}
{{- end }}
{{- end -}}

{{- define "badbuzz.tlsVolumes" -}}
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- if .Values.redis.tls.existingSecret }}
- name: redis-tls
  secret:
    secretName: {{ .Values.redis.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "badbuzz.tlsVolumeMounts" -}}
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: {{ include "badbuzz.kafka.tlsDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.redis.tls.existingSecret }}
- name: redis-tls
  mountPath: {{ include "badbuzz.redis.tlsDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* Writable places on a read-only root: BADBUZZ_HOME, the model cache, /tmp. */}}
{{- define "badbuzz.scratchVolumes" -}}
- name: home
  emptyDir:
    sizeLimit: {{ .Values.worker.home.sizeLimit }}
- name: model-cache
  emptyDir:
    sizeLimit: {{ .Values.worker.modelCache.sizeLimit }}
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "badbuzz.scratchVolumeMounts" -}}
- name: home
  mountPath: {{ .Values.worker.home.mountPath }}
- name: model-cache
  mountPath: {{ printf "%s/model-cache" .Values.worker.home.mountPath }}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "badbuzz.podSecurityContext" -}}
{{- if .enabled }}
securityContext:
  {{- omit . "enabled" | toYaml | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "badbuzz.containerSecurityContext" -}}
{{- if .enabled }}
securityContext:
  {{- omit . "enabled" | toYaml | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Refuse values that cannot work. */}}
{{- define "badbuzz.validate" -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.maxReplicas) (int .Values.topics.partitions)) -}}
{{- fail (printf "autoscaling.maxReplicas (%v) exceeds topics.partitions (%v): a worker beyond the partitions holds none" .Values.autoscaling.maxReplicas .Values.topics.partitions) -}}
{{- end -}}
{{- if and (not .Values.autoscaling.enabled) (gt (int .Values.worker.replicaCount) (int .Values.topics.partitions)) -}}
{{- fail (printf "worker.replicaCount (%v) exceeds topics.partitions (%v): a worker beyond the partitions holds none" .Values.worker.replicaCount .Values.topics.partitions) -}}
{{- end -}}
{{- if gt (int .Values.topics.minInsyncReplicas) (int .Values.topics.replicationFactor) -}}
{{- fail (printf "topics.minInsyncReplicas (%v) exceeds topics.replicationFactor (%v): no write could be acknowledged" .Values.topics.minInsyncReplicas .Values.topics.replicationFactor) -}}
{{- end -}}
{{- if not (has .Values.redis.mode (list "standalone" "cluster" "sentinel")) -}}
{{- fail (printf "redis.mode is %q: standalone, cluster or sentinel" .Values.redis.mode) -}}
{{- end -}}
{{- if and (eq .Values.redis.mode "sentinel") (not .Values.redis.sentinels) -}}
{{- fail "redis.sentinels is required with redis.mode sentinel: list them as host:port" -}}
{{- end -}}
{{- if and .Values.topics.create.enabled .Values.topics.strimzi.enabled -}}
{{- fail "topics.create.enabled and topics.strimzi.enabled both create the topics: choose one" -}}
{{- end -}}
{{- end -}}

{{/* A badbuzz Job's pod spec: (dict "root" $ "image" <image values> "resources" <resources> "command" <list> "preInstall" <bool> "scheduling" <values with nodeSelector/tolerations/affinity>). Jobs get the settings inline, so a pre-install hook needs no ConfigMap yet. */}}
{{- define "badbuzz.jobPodSpec" -}}
{{- $root := .root -}}
{{- /* A pre-install hook runs before the chart's ServiceAccount exists: the namespace's default one then (no token is mounted either way). */ -}}
{{- if not (and .preInstall $root.Values.serviceAccount.create) }}
serviceAccountName: {{ include "badbuzz.serviceAccountName" $root }}
{{- end }}
automountServiceAccountToken: false
restartPolicy: Never
{{- include "badbuzz.imagePullSecrets" $root }}
{{- include "badbuzz.podSecurityContext" $root.Values.worker.podSecurityContext }}
containers:
  - name: {{ .name }}
    image: {{ include "badbuzz.image" (dict "image" .image "root" $root) }}
    imagePullPolicy: {{ .image.pullPolicy }}
    command:
      {{- toYaml .command | nindent 6 }}
    {{- include "badbuzz.containerSecurityContext" $root.Values.worker.containerSecurityContext | nindent 4 }}
    env:
      {{- include "badbuzz.settingsEnv" $root | nindent 6 }}
      {{- include "badbuzz.secretEnv" $root | nindent 6 }}
    resources:
      {{- toYaml .resources | nindent 6 }}
    volumeMounts:
      {{- include "badbuzz.scratchVolumeMounts" $root | nindent 6 }}
      {{- include "badbuzz.tlsVolumeMounts" $root | nindent 6 }}
volumes:
  {{- include "badbuzz.scratchVolumes" $root | nindent 2 }}
  {{- include "badbuzz.tlsVolumes" $root | nindent 2 }}
{{- with .scheduling }}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- end -}}
