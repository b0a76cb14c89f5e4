{{/* Names ------------------------------------------------------------------------------- */}}

{{- define "turbomode.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "turbomode.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "turbomode.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "turbomode.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels: call with (dict "root" $ "component" "serving") ------------------------------ */}}

{{- define "turbomode.selectorLabels" -}}
app.kubernetes.io/name: {{ include "turbomode.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{- define "turbomode.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "turbomode.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: turbomode
{{- end -}}

{{/* The labels every TurboMode client pod carries: NetworkPolicies admit these to Redis,
     PostgreSQL, the Pushgateway and the Ray head. */}}
{{- define "turbomode.clientSelector" -}}
app.kubernetes.io/name: {{ include "turbomode.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Images: call with (dict "root" $ "image" .Values.images.serving) ---------------------- */}}

{{- define "turbomode.image" -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion | toString -}}
{{- if eq $tag "latest" -}}
{{- fail "image tag 'latest' is not allowed: pin a version (and optionally a digest)" -}}
{{- end -}}
{{- $repo := .image.repository -}}
{{- with .registry -}}
{{- $repo = printf "%s/%s" (trimSuffix "/" .) $repo -}}
{{- end -}}
{{- if .image.digest -}}
{{- printf "%s:%s@%s" $repo $tag .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{- define "turbomode.componentsImage" -}}
{{- include "turbomode.image" (dict "root" . "image" .Values.images.components "registry" .Values.images.registry) -}}
{{- end -}}

{{- define "turbomode.servingImage" -}}
{{- include "turbomode.image" (dict "root" . "image" .Values.images.serving "registry" .Values.images.registry) -}}
{{- end -}}

{{- define "turbomode.imagePullSecrets" -}}
{{- with .Values.images.pullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Security contexts ------------------------------------------------------------------- */}}

{{- define "turbomode.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{- define "turbomode.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- end -}}

{{/* Stores: hosts, Secrets and URLs -------------------------------------------------------- */}}

{{- define "turbomode.credentialsSecretName" -}}
{{- printf "%s-credentials" (include "turbomode.fullname" .) -}}
{{- end -}}

{{- define "turbomode.redis.host" -}}
{{- if .Values.redis.enabled -}}
{{- printf "%s-redis" (include "turbomode.fullname" .) -}}
{{- else -}}
{{- required "externalRedis.host is required when redis.enabled=false" .Values.externalRedis.host -}}
{{- end -}}
{{- end -}}

{{- define "turbomode.redis.port" -}}
{{- if .Values.redis.enabled }}6379{{ else }}{{ .Values.externalRedis.port }}{{ end -}}
{{- end -}}

{{/* The Secret and key that hold the Redis password; empty when Redis runs without AUTH. */}}
{{- define "turbomode.redis.secretName" -}}
{{- if .Values.redis.enabled -}}
{{- if .Values.redis.auth.enabled -}}
{{- default (include "turbomode.credentialsSecretName" .) .Values.redis.auth.existingSecret -}}
{{- end -}}
{{- else -}}
{{- .Values.externalRedis.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "turbomode.redis.secretKey" -}}
{{- if .Values.redis.enabled -}}
{{- .Values.redis.auth.existingSecretPasswordKey -}}
{{- else -}}
{{- .Values.externalRedis.existingSecretPasswordKey -}}
{{- end -}}
{{- end -}}

{{- define "turbomode.postgresql.host" -}}
{{- if .Values.postgresql.enabled -}}
{{- printf "%s-postgresql" (include "turbomode.fullname" .) -}}
{{- else -}}
{{- required "externalPostgresql.host is required when postgresql.enabled=false" .Values.externalPostgresql.host -}}
{{- end -}}
{{- end -}}

{{- define "turbomode.postgresql.secretName" -}}
{{- if .Values.postgresql.enabled -}}
{{- default (include "turbomode.credentialsSecretName" .) .Values.postgresql.auth.existingSecret -}}
{{- else -}}
{{- required "externalPostgresql.existingSecret is required when postgresql.enabled=false" .Values.externalPostgresql.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "turbomode.postgresql.secretKey" -}}
{{- if .Values.postgresql.enabled -}}
{{- .Values.postgresql.auth.existingSecretPasswordKey -}}
{{- else -}}
{{- .Values.externalPostgresql.existingSecretPasswordKey -}}
{{- end -}}
{{- end -}}

{{/* Passwords never appear in a URL the chart renders: a URL names its password variable,
     written with .ref: "$(%s)" (the default) for Kubernetes' expansion of container env values,
     "${%s}" for the pipeline settings file, which the KFP components expand. */}}

{{/* SQLAlchemy URL for a database; call with (dict "root" $ "database" … "ref" …). */}}
{{- define "turbomode.postgresql.url" -}}
{{- $root := .root -}}
{{- $password := printf (.ref | default "$(%s)") "POSTGRES_PASSWORD" -}}
{{- if $root.Values.postgresql.enabled -}}
{{- printf "postgresql+psycopg://%s:%s@%s:5432/%s" $root.Values.postgresql.auth.username $password (include "turbomode.postgresql.host" $root) $root.Values.postgresql.auth.database -}}
{{- else -}}
{{- $e := $root.Values.externalPostgresql -}}
{{- $db := .database | default $e.database -}}
{{- printf "postgresql+psycopg://%s:%s@%s:%v/%s" $e.username $password (include "turbomode.postgresql.host" $root) $e.port $db -}}
{{- with $e.sslmode }}{{ printf "?sslmode=%s" . }}{{ end -}}
{{- end -}}
{{- end -}}

{{/* redis:// (rediss:// with TLS) URL; call with (dict "root" $ "ref" …). No password part
     when Redis runs without AUTH. */}}
{{- define "turbomode.redis.url" -}}
{{- $root := .root -}}
{{- $tls := and (not $root.Values.redis.enabled) $root.Values.externalRedis.tls -}}
{{- $db := ternary 0 $root.Values.externalRedis.db $root.Values.redis.enabled -}}
{{- $auth := "" -}}
{{- if include "turbomode.redis.secretName" $root -}}
{{- $auth = printf ":%s@" (printf (.ref | default "$(%s)") "REDIS_PASSWORD") -}}
{{- end -}}
{{- printf "%s://%s%s:%s/%v" (ternary "rediss" "redis" $tls) $auth (include "turbomode.redis.host" $root) (include "turbomode.redis.port" $root) $db -}}
{{- end -}}

{{/* Every setting the chart gives TurboMode, as YAML {section: {field: value}}: the data
     volume's paths, the model registry, the Pushgateway, Feast, the device, the Ray address,
     then .Values.settings on top; call with (dict "root" $ "ref" …). Store URLs are added
     (and win over .Values.settings) only when .ref is given: the jobs' containers get them as
     env entries of their own, which Kubernetes expands. One source for the settings ConfigMap
     (environment variables) and the pipeline settings Secret (a YAML file), so the CronWorkflows
     and the KFP steps read the same stores. */}}
{{- define "turbomode.settings" -}}
{{- $root := .root -}}
{{- $mount := $root.Values.persistence.mountPath -}}
{{- $stores := dict "model_registry_uri" ($root.Values.modelRegistry.uri | default (printf "%s/data/models" $mount)) -}}
{{- with (include "turbomode.pushgatewayUrl" $root) -}}
{{- $_ := set $stores "pushgateway_url" . -}}
{{- end -}}
{{- $compute := dict "device" $root.Values.compute.device -}}
{{- if $root.Values.ray.enabled -}}
{{- $_ := set $compute "ray_address" (printf "ray://%s-head-svc.%s.svc:10001" (include "turbomode.rayClusterName" $root) $root.Release.Namespace) -}}
{{- end -}}
{{- $tree := dict
      "data" (dict "data_dir" (printf "%s/data" $mount))
      "yfinance" (dict "cache_dir" (printf "%s/data/cache/yfinance" $mount))
      "stores" $stores
      "features" (dict "profile" $root.Values.features.profile "project" $root.Values.features.project "offline_store" ($root.Values.features.offlineStore | default "auto"))
      "compute" $compute -}}
{{- $tree = mergeOverwrite $tree (deepCopy ($root.Values.settings | default dict)) -}}
{{- with .ref -}}
{{- $_ := mergeOverwrite $tree (dict "stores" (dict
      "signals_url" (include "turbomode.postgresql.url" (dict "root" $root "ref" .))
      "registry_sql_url" (include "turbomode.postgresql.url" (dict "root" $root "database" $root.Values.externalPostgresql.registryDatabase "ref" .))
      "redis_url" (include "turbomode.redis.url" (dict "root" $root "ref" .)))) -}}
{{- end -}}
{{- toYaml $tree -}}
{{- end -}}

{{- define "turbomode.pipelineSettingsSecretName" -}}
{{- printf "%s-pipeline-settings" (include "turbomode.fullname" .) -}}
{{- end -}}

{{- define "turbomode.pushgatewayUrl" -}}
{{- if .Values.pushgateway.enabled -}}
{{- printf "http://%s-pushgateway:9091" (include "turbomode.fullname" .) -}}
{{- else -}}
{{- .Values.monitoring.pushgatewayUrl -}}
{{- end -}}
{{- end -}}

{{- define "turbomode.rayClusterName" -}}
{{- printf "%s-ray" (include "turbomode.fullname" .) -}}
{{- end -}}

{{- define "turbomode.dataClaimName" -}}
{{- default (printf "%s-data" (include "turbomode.fullname" .)) .Values.persistence.existingClaim -}}
{{- end -}}

{{/* Environment of every TurboMode container (jobs, Ray nodes, serving). Passwords come from
     Secrets; the store URLs reference them as $(VAR), which Kubernetes expands in place. */}}
{{- define "turbomode.env" -}}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "turbomode.postgresql.secretName" . }}
      key: {{ include "turbomode.postgresql.secretKey" . }}
- name: TURBOMODE_STORES__SIGNALS_URL
  value: {{ include "turbomode.postgresql.url" (dict "root" .) | quote }}
- name: TURBOMODE_STORES__REGISTRY_SQL_URL
  value: {{ include "turbomode.postgresql.url" (dict "root" . "database" .Values.externalPostgresql.registryDatabase) | quote }}
{{- with .Values.notify.smtpPasswordSecret }}{{ if .name }}
- name: SMTP_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}{{ end }}
{{- with .Values.notify.webhookUrlSecret }}{{ if .name }}
- name: TURBOMODE_NOTIFY__WEBHOOK_URL
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}{{ end }}
{{- $redisHost := include "turbomode.redis.host" . }}
{{- $redisPort := include "turbomode.redis.port" . }}
{{- $redisDb := ternary 0 .Values.externalRedis.db .Values.redis.enabled }}
{{- $tls := and (not .Values.redis.enabled) .Values.externalRedis.tls }}
{{- $secret := include "turbomode.redis.secretName" . }}
{{- if $secret }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ include "turbomode.redis.secretKey" . }}
- name: TURBOMODE_STORES__REDIS_URL
  value: {{ include "turbomode.redis.url" (dict "root" .) | quote }}
- name: FEAST_REDIS_CONNECTION_STRING
  value: {{ printf "%s:%s,db=%v,password=$(REDIS_PASSWORD)%s" $redisHost $redisPort $redisDb (ternary ",ssl=true" "" $tls) | quote }}
{{- else }}
- name: TURBOMODE_STORES__REDIS_URL
  value: {{ include "turbomode.redis.url" (dict "root" .) | quote }}
- name: FEAST_REDIS_CONNECTION_STRING
  value: {{ printf "%s:%s,db=%v%s" $redisHost $redisPort $redisDb (ternary ",ssl=true" "" $tls) | quote }}
{{- end }}
{{- end -}}

{{- define "turbomode.envFrom" -}}
- configMapRef:
    name: {{ include "turbomode.fullname" . }}-settings
{{- with .Values.modelRegistry.existingSecret }}
- secretRef:
    name: {{ . }}
{{- end }}
{{- end -}}

{{/* Writable paths under a read-only root filesystem, the data volume and Feast's config. */}}
{{- define "turbomode.volumes" -}}
- name: tmp
  emptyDir: {}
- name: home
  emptyDir: {}
- name: feast
  configMap:
    name: {{ include "turbomode.fullname" . }}-feast
- name: data
{{- if .Values.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ include "turbomode.dataClaimName" . }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end -}}

{{- define "turbomode.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/turbomode
- name: feast
  mountPath: /etc/turbomode/feast
  readOnly: true
- name: data
  mountPath: {{ .Values.persistence.mountPath }}
{{- end -}}

{{/* checkov waivers for a workload, each with its reason, rendered as checkov.io/skipN
     annotations. Call with (dict "root" $ "images" (list .image …) "envSecrets" "reason").
     The image waivers appear only while they apply: CKV_K8S_43 (image by digest) while some
     image has no digest, CKV_K8S_15 (pull policy Always) while images.pullPolicy is not Always.
     CKV_K8S_35 (secrets as files) is waived when envSecrets gives the reason. */}}
{{- define "turbomode.checkovWaivers" -}}
{{- $waivers := list -}}
{{- $undigested := list -}}
{{- range .images -}}
{{- if not .digest -}}{{- $undigested = append $undigested .repository -}}{{- end -}}
{{- end -}}
{{- if $undigested -}}
{{- $waivers = append $waivers (printf "CKV_K8S_43=image %s pinned by release tag, not digest (its digest value pins one)" (join ", " $undigested)) -}}
{{- end -}}
{{- if ne .root.Values.images.pullPolicy "Always" -}}
{{- $waivers = append $waivers (printf "CKV_K8S_15=pullPolicy %s with version tags (latest is refused by the schema and templates); images.pullPolicy Always re-pulls" .root.Values.images.pullPolicy) -}}
{{- end -}}
{{- with .envSecrets -}}
{{- $waivers = append $waivers (printf "CKV_K8S_35=%s" .) -}}
{{- end -}}
{{- range $i, $w := $waivers }}
checkov.io/skip{{ add1 $i }}: {{ $w | quote }}
{{- end -}}
{{- end -}}
