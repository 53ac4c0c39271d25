from django.db import migrations


def create_default(apps, schema_editor):
    SubscriptionType = apps.get_model("engagement", "SubscriptionType")
    SubscriptionType.objects.get_or_create(
        key="email_marketing",
        defaults={"label": "Marketing email", "is_marketing": True,
                  "description": "News, offers and tips."})


class Migration(migrations.Migration):
    dependencies = [("engagement", "0001_initial")]
    operations = [migrations.RunPython(create_default, migrations.RunPython.noop)]
