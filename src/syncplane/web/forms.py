"""The integration form, generated from the connector's JSON Schemas (config and credentials) so that a new
connector gets its form with nothing written here. Validation is the API's own (IntegrationSerializer): the
form only turns its fields into the API's body and the API's errors back into messages next to each field."""

from __future__ import annotations

from django import forms

from syncplane.integrations.base import CREDENTIAL_FIELDS, credential_schema

CONFIG, CREDENTIAL = "config__", "credential__"
MULTILINE_SECRETS = {"private_key", "service_account_key"}  # PEM keys and key files: pasted whole


def _types(schema: dict) -> set[str]:
    kind = schema.get("type", "string")
    return set(kind) if isinstance(kind, list) else {kind}


def config_field(name: str, schema: dict, required: bool) -> forms.Field:
    """A form field for one config property: enums as selects, booleans as check boxes (or a three-way select
    when null means "the connector decides"), lists of text one per line, objects as JSON."""
    types = _types(schema)
    common = {"label": name.replace("_", " ").capitalize(), "required": required,
              "help_text": schema.get("description", "")}
    if "enum" in schema:
        choices = [("", "Default" if not required else "Choose")] + [(str(v), str(v)) for v in schema["enum"]]
        return forms.TypedChoiceField(choices=choices, coerce=_enum_coercer(schema["enum"]), empty_value=None,
                                      **common)
    if types == {"boolean"}:
        return forms.BooleanField(**{**common, "required": False})
    if "boolean" in types:
        return forms.NullBooleanField(**{**common, "required": False})
    if "integer" in types:
        return forms.IntegerField(min_value=schema.get("minimum"), max_value=schema.get("maximum"), **common)
    if "number" in types:
        return forms.FloatField(min_value=schema.get("minimum"), max_value=schema.get("maximum"), **common)
    if "array" in types and _types(schema.get("items", {})) == {"string"}:
        common["help_text"] = (common["help_text"] + " One per line.").strip()
        return forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), **common)
    if types & {"object", "array"}:
        common["help_text"] = (common["help_text"] + " JSON.").strip()
        return forms.JSONField(widget=forms.Textarea(attrs={"rows": 4}), **common)
    return forms.CharField(max_length=schema.get("maxLength"), **common)


def _enum_coercer(values: list):
    by_text = {str(v): v for v in values}
    return lambda text: by_text.get(text, text)


class IntegrationForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="A name unique among live integrations.")
    base_url = forms.CharField(max_length=500, label="Base URL")
    enabled = forms.BooleanField(required=False, initial=True,
                                 help_text="Off: the schedule leaves it alone; syncs asked for by hand still run.")
    scheduled = forms.BooleanField(required=False, help_text="Sync it on a schedule.")
    sync_interval_minutes = forms.IntegerField(min_value=0, max_value=7 * 24 * 60, label="Every (minutes)")

    def __init__(self, *args, connector, auth_type: str, instance=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.connector, self.auth_type, self.instance = connector, auth_type, instance
        self.fields["base_url"].help_text = connector.base_url_help + (
            f" For example {connector.base_url_example}" if connector.base_url_example else "")
        self.fields["sync_interval_minutes"].initial = connector.default_sync_interval_minutes
        schema = connector.config_schema
        required = set(schema.get("required", ()))
        config = instance.config if instance else {}
        for name, prop in schema.get("properties", {}).items():
            field = config_field(name, prop, name in required)
            value = config.get(name, prop.get("default"))
            field.initial = _initial(value, prop)
            self.fields[CONFIG + name] = field
        stored = instance.credentials if instance and instance.auth_type == auth_type else {}
        properties = credential_schema((auth_type,))[auth_type]["properties"]
        for name, secret in CREDENTIAL_FIELDS[auth_type].items():
            label = name.replace("_", " ").capitalize()
            if secret:
                is_set = bool(stored.get(name))
                widget = (forms.Textarea(attrs={"rows": 4, "autocomplete": "off"}) if name in MULTILINE_SECRETS
                          else forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}))
                help_text = ("Set. Leave blank to keep it. " if is_set else "") + (
                    "A plain value (stored encrypted) or a reference: env:NAME, file:/path, vault:path#key.")
                self.fields[CREDENTIAL + name] = forms.CharField(
                    label=label, required=not is_set, widget=widget, help_text=help_text, strip=False)
            else:
                self.fields[CREDENTIAL + name] = forms.CharField(
                    label=label, initial=stored.get(name, ""), max_length=properties[name].get("maxLength"))
        if instance is not None:
            for name in ("name", "base_url", "enabled", "scheduled", "sync_interval_minutes"):
                self.fields[name].initial = getattr(instance, name)

    def config_fields(self):
        return [self[name] for name in self.fields if name.startswith(CONFIG)]

    def credential_fields(self):
        return [self[name] for name in self.fields if name.startswith(CREDENTIAL)]

    def api_body(self) -> dict:
        """The body the API takes, from the cleaned form: config settings left empty take their defaults,
        secrets left blank are kept."""
        data = self.cleaned_data
        properties = self.connector.config_schema.get("properties", {})
        config = {}
        for name, prop in properties.items():
            value = data.get(CONFIG + name)
            if value is None or value == "":
                continue
            if "array" in _types(prop) and isinstance(value, str):
                value = [line.strip() for line in value.splitlines() if line.strip()]
            config[name] = value
        credentials = {}
        for name in CREDENTIAL_FIELDS[self.auth_type]:
            value = data.get(CREDENTIAL + name)
            if value:
                credentials[name] = value.strip() if name not in MULTILINE_SECRETS else value
        body = {name: data[name] for name in ("name", "base_url", "enabled", "scheduled", "sync_interval_minutes")}
        body.update(auth_type=self.auth_type, config=config)
        if credentials or self.instance is None or self.instance.auth_type != self.auth_type:
            body["credentials"] = credentials
        return body

    def add_api_errors(self, errors: dict) -> None:
        """The API's errors next to the fields they name: "config" and "credentials" messages start with the
        setting's name ("page_size: ..."), the others are keyed by field."""
        for key, messages in errors.items():
            for message in messages if isinstance(messages, list) else [messages]:
                text = str(message)
                field = self._field_named(key, text)
                self.add_error(field, text)

    def _field_named(self, key: str, text: str) -> str | None:
        if key in ("config", "credentials"):
            prefix = CONFIG if key == "config" else CREDENTIAL
            name = text.split(":", 1)[0].split(".", 1)[0].strip()
            return prefix + name if prefix + name in self.fields else None
        return key if key in self.fields else None


def _initial(value, prop: dict):
    if value is None:
        return None
    if isinstance(value, list) and _types(prop.get("items", {})) == {"string"}:
        return "\n".join(value)
    return value  # a JSON field renders a dict or list itself
