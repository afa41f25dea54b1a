{{/* Labels every weft object carries. */}}
{{- define "weft.labels" -}}
app.kubernetes.io/part-of: weft
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "weft.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{/* weft's root namespace (mesh-wide policies, the agents' service account) is weft-system. */}}
{{- define "weft.namespace" -}}
{{- if ne .Release.Namespace "weft-system" -}}
{{- fail "install weft into the weft-system namespace (helm install --namespace weft-system --create-namespace): the agents' identity and mesh-wide policies live there" -}}
{{- end -}}
{{ .Release.Namespace }}
{{- end -}}
