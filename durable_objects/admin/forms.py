"""Forms of the object pages: a key-value entry (JSON value) and the console's query."""

import json

from django import forms

from durable_objects.serialization import nesting_depth

# The deepest JSON value the entry form takes. Deeper values fail later, wherever a
# value is walked recursively (serialized, shown), with a RecursionError.
MAX_JSON_DEPTH = 100
TOO_DEEP = f"This JSON is nested too deeply: at most {MAX_JSON_DEPTH} levels of [] and {{}}."


class EntryForm(forms.Form):
    key = forms.CharField(strip=False, widget=forms.TextInput(attrs={"size": 60}))
    value = forms.CharField(
        strip=False,
        widget=forms.Textarea(attrs={"rows": 12, "cols": 80, "spellcheck": "false"}),
        help_text='JSON: "text", 42, 1.5, true, null, [1, 2] or {"a": 1}.',
    )

    def clean_value(self):
        text = self.cleaned_data["value"]
        try:
            value = json.loads(text)
        except RecursionError:  # thousands of nested brackets: not a ValueError
            raise forms.ValidationError(TOO_DEEP) from None
        except ValueError as exc:
            raise forms.ValidationError(
                f'This is not valid JSON ({exc}). Strings need double quotes: "like this".'
            ) from None
        if nesting_depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
            raise forms.ValidationError(TOO_DEEP)
        return value


class ConsoleForm(forms.Form):
    sql = forms.CharField(
        label="SQL",
        widget=forms.Textarea(attrs={"rows": 6, "cols": 80, "spellcheck": "false"}),
        help_text="One read-only statement: SELECT, WITH … SELECT, or a PRAGMA such as "
        "table_info(name). Results stop at 500 rows or 8 MiB of values.",
    )
