"""The report's landing page (Snakefile: ``report: report_page(...)``)."""
import re
from pathlib import Path


def report_page(template, findings):
    """The report's landing page: ``template`` (workflow/report/workflow.rst, rendered by Snakemake's Jinja)
    with the study's findings (findings.md, written by the aggregate rule; a note where the study has not
    run) in a section of its own. Written under .snakemake/ and rewritten only when it changes."""
    text = Path(findings).read_text() if Path(findings).exists() else "(run the study: ``snakemake --cores all``)\n"
    text = re.sub(r"(?<!`)`([^`]+)`(?!`)", r"``\1``", text)  # markdown code is RST literal text
    page = f"{Path(template).read_text()}\n\nFindings\n--------\n\n{{% raw %}}\n{text}\n{{% endraw %}}\n"
    path = Path(".snakemake", "gradvar_report", "workflow.rst").resolve()
    if not path.exists() or path.read_text() != page:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page)
    return str(path)
