"""Forms of the object pages: a key-value entry (JSON value) and the console's query."""

import json

from django import forms


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
            return json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(
                f'This is not valid JSON ({exc}). Strings need double quotes: "like this".'
            ) from None


class ConsoleForm(forms.Form):
    sql = forms.CharField(
        label="SQL",
        widget=forms.Textarea(attrs={"rows": 6, "cols": 80, "spellcheck": "false"}),
        help_text="One read-only statement: SELECT, WITH … SELECT, or a PRAGMA such as "
        "table_info(name). Results stop at 500 rows or 8 MiB of values.",
    )
