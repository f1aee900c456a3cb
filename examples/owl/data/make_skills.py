#!/usr/bin/env python3
"""Writes the OWL example's dataset next to this script, deterministically:

    skills.jsonl       2,100 {"key": "s0001", "name": ...} records to classify
    known_skills.txt   300 canonical skills already in the registry (Alma's list)
    manifest.json      counts per kind and per intended domain

The names are composed here from stems, tools and qualifiers per domain; they
are not copied from any dataset. The mix mirrors a real review batch: 85 %
clean skills over the 8 domains (not uniformly), 5 % junk that Lucy must reject
and 10 % near-duplicates of known skills (case, punctuation, spacing, "&" vs
"and", a trailing "skills") that Alma must merge.

Re-running rewrites identical files (fixed seed, sorted inputs); the script
checks its own output against Lucy's rules and the duplicate key Alma uses, and
fails loudly instead of writing a dataset that contradicts its manifest.

Usage: make_skills.py [--check] [--domains]
    --check    write nothing; exit 1 if the checked-in files differ
    --domains  also print "key<TAB>kind<TAB>intended domain" to stdout
               (for tuning the simulator's keyword table)
"""

import importlib.util
import json
import pathlib
import random
import re
import sys

SEED = 20240611
HERE = pathlib.Path(__file__).resolve().parent

CLEAN_TOTAL = 1785
JUNK_PER_CATEGORY = 21  # 5 categories -> 105
DUPLICATE_TOTAL = 210
KNOWN_TOTAL = 300

# Share of each domain among clean and known skills (a real batch is lopsided
# towards technology).
DOMAIN_SHARE = {
    "technology": 0.24,
    "data_and_analytics": 0.16,
    "business_operations": 0.13,
    "people_and_communication": 0.12,
    "project_and_product": 0.11,
    "compliance_and_risk": 0.09,
    "specialized_knowledge": 0.09,
    "corporate_culture": 0.06,
}


def combine(templates, fills):
    return [t.format(f) for t in templates for f in fills]


# -- vocabulary ---------------------------------------------------------------
# Components are written in mid-sentence case ("procurement", "Kubernetes");
# the first letter of a finished name is capitalised.


def technology():
    infra = ["Kubernetes", "Docker", "Terraform", "Ansible", "Helm", "Istio", "Nginx",
             "HAProxy", "VMware vSphere", "OpenStack", "Proxmox", "Linux server",
             "Windows Server", "Active Directory", "Consul", "Puppet", "Chef", "Podman",
             "OpenShift", "AWS", "Azure", "Google Cloud", "Cloudflare", "Envoy proxy"]
    infra_t = ["{} administration", "{} troubleshooting", "{} performance tuning",
               "{} security hardening", "{} upgrades", "{} automation", "{} deployment",
               "{} configuration management", "{} capacity tuning"]
    languages = ["Python", "Java", "Golang", "Rust", "C++", "TypeScript", "JavaScript",
                 "Kotlin", "Swift", "C#", "Scala", "Ruby", "PHP", "Elixir", "Haskell",
                 "Clojure", "Erlang", "Dart", "Lua", "Perl", "Bash", "PowerShell"]
    languages_t = ["{} programming", "{} backend development", "{} code review",
                   "idiomatic {}", "{} unit testing", "{} concurrency", "{} memory profiling",
                   "{} library design", "debugging {} services", "{} refactoring",
                   "{} build tooling"]
    stores = ["PostgreSQL", "MySQL", "Redis", "MongoDB", "Cassandra", "Elasticsearch",
              "SQLite", "DynamoDB", "MariaDB", "Oracle Database", "SQL Server", "CockroachDB",
              "Neo4j", "RabbitMQ", "Kafka", "NATS"]
    stores_t = ["{} replication setup", "{} backup and restore", "{} schema migrations",
                "{} query tuning", "{} high availability", "{} administration", "{} upgrades",
                "{} cluster operations"]
    web = ["React", "Angular", "Vue.js", "Django", "Flask", "Spring Boot", "ASP.NET Core",
           "Ruby on Rails", "Next.js", "Node.js", "Express.js", "FastAPI", "Svelte",
           "GraphQL", "gRPC", "REST API", "WebSocket", "Laravel"]
    web_t = ["{} application development", "{} component design", "{} API design",
             "{} performance optimisation", "testing {} applications", "{} security review",
             "{} service development", "migrating to {}"]
    devops = ["Jenkins", "GitHub Actions", "GitLab CI", "Argo CD", "Prometheus",
              "OpenTelemetry", "Datadog", "CircleCI", "Bazel", "CMake", "Git", "Nagios",
              "Zabbix", "ELK stack"]
    devops_t = ["{} pipeline setup", "{} administration", "{} alerting rules",
                "{} migration", "{} configuration", "{} troubleshooting", "scaling {}"]
    standalone = [
        "Kubernetes cluster administration", "TLS certificate management",
        "OAuth 2.0 integration", "single sign-on integration", "zero-trust network design",
        "firewall rule management", "VPN configuration", "DNS administration",
        "load balancer configuration", "BGP routing", "network packet analysis with Wireshark",
        "penetration testing of web applications", "secure code review",
        "container image scanning", "secrets management with HashiCorp Vault",
        "endpoint protection deployment", "malware reverse engineering",
        "intrusion detection tuning", "Android app development", "iOS app development",
        "embedded firmware development", "FPGA design with Verilog", "Arduino prototyping",
        "Raspberry Pi automation", "Bluetooth Low Energy integration",
        "real-time operating systems", "device driver development",
        "Flutter cross-platform development", "Unity game development",
        "Unreal Engine scripting", "WebAssembly modules", "compiler construction",
        "distributed systems design", "microservices architecture",
        "event-driven architecture", "site reliability engineering",
        "infrastructure as code", "serverless functions on AWS Lambda",
        "object-oriented design", "functional programming", "test-driven development",
        "continuous integration", "Linux kernel tuning", "shell scripting",
        "API gateway configuration", "caching strategies with Redis", "CI/CD pipeline design",
        "software architecture reviews", "Git branching strategies", "web accessibility engineering",
    ]
    return (combine(infra_t, infra) + combine(languages_t, languages) +
            combine(stores_t, stores) + combine(web_t, web) + combine(devops_t, devops) +
            standalone)


def data_and_analytics():
    bi = ["Tableau", "Power BI", "Looker", "Qlik Sense", "Metabase", "Excel",
          "Google Analytics", "Superset"]
    bi_t = ["{} reporting", "{} dashboard design", "data visualisation in {}",
            "self-service analytics with {}", "{} data modelling", "{} KPI dashboards"]
    analysis = ["SQL", "R", "pandas", "NumPy", "SAS", "SPSS", "Stata", "MATLAB", "Jupyter"]
    analysis_t = ["statistical analysis in {}", "{} for exploratory analysis",
                  "data cleaning with {}", "advanced {} analytics", "{} data wrangling"]
    engineering = ["Apache Spark", "dbt", "Apache Airflow", "Snowflake", "BigQuery",
                   "Databricks", "Redshift", "Alteryx", "Apache Flink"]
    engineering_t = ["{} data pipelines", "{} data modelling", "{} ETL development",
                     "{} warehouse design", "data quality checks in {}"]
    ml = ["scikit-learn", "TensorFlow", "PyTorch", "XGBoost", "Hugging Face Transformers",
          "LightGBM", "Keras"]
    ml_t = ["{} model training", "machine learning with {}", "{} model evaluation",
            "{} hyperparameter tuning"]
    topics = [
        "regression analysis", "time series forecasting", "A/B test analysis",
        "cohort analysis", "churn prediction", "customer segmentation", "data cleaning",
        "data visualisation", "dashboard design", "ETL pipeline development",
        "data warehouse modelling", "dimensional modelling", "statistical hypothesis testing",
        "Bayesian inference", "feature engineering", "anomaly detection",
        "natural language processing", "computer vision", "recommendation systems",
        "survey data analysis", "geospatial analysis", "data quality monitoring",
        "master data management", "predictive modelling", "sentiment analysis",
        "web analytics", "causal inference", "cluster analysis", "decision tree modelling",
        "text mining", "marketing mix modelling", "attribution modelling", "data storytelling",
        "Monte Carlo simulation", "principal component analysis", "data lineage tracking",
        "data catalog management", "metric definition", "descriptive statistics",
        "big data processing", "stream analytics", "large language model evaluation",
        "experiment design", "survival analysis", "data governance",
    ]
    topics_t = ["{}", "applied {}", "{} fundamentals", "advanced {}"]
    return (combine(bi_t, bi) + combine(analysis_t, analysis) +
            combine(engineering_t, engineering) + combine(ml_t, ml) +
            combine(topics_t, topics))


def business_operations():
    processes = [
        "procurement", "vendor management", "supply chain planning", "inventory management",
        "accounts payable", "accounts receivable", "invoicing", "budgeting",
        "revenue forecasting", "financial reporting", "cash flow management",
        "payroll processing", "expense management", "order fulfilment",
        "logistics coordination", "warehouse operations", "customer support operations",
        "sales operations", "pricing strategy", "supplier contract negotiation",
        "business process improvement", "Lean Six Sigma", "cost reduction",
        "facilities management", "office administration", "fleet management", "bookkeeping",
        "month-end close", "demand planning", "sales pipeline management",
        "key account management", "revenue operations", "customer onboarding",
        "purchase order processing", "strategic sourcing", "category management",
        "franchise operations", "retail merchandising", "call centre operations",
        "profit and loss management", "treasury management", "credit control",
        "billing operations", "financial planning and analysis", "operating model design",
        "shared services management", "freight forwarding", "field service scheduling",
        "sales territory planning", "channel partner management", "e-commerce operations",
    ]
    templates = ["{}", "quarterly {}", "{} process design", "{} optimisation", "{} in SAP",
                 "{} in NetSuite", "{} for small businesses", "global {}"]
    return combine(templates, processes)


def people_and_communication():
    base = [
        "public speaking", "conflict mediation", "active listening", "negotiation",
        "business writing", "technical writing", "presentation delivery",
        "stakeholder communication", "giving constructive feedback", "executive coaching",
        "mentoring", "candidate interviewing", "recruiting", "onboarding new hires",
        "performance reviews", "team leadership", "cross-cultural communication",
        "workshop facilitation", "emotional intelligence", "persuasive writing",
        "storytelling", "difficult conversations", "delegation", "employee relations",
        "talent acquisition", "succession planning", "learning and development",
        "meeting facilitation", "career coaching", "people management",
        "influencing without authority", "relationship building", "professional networking",
        "customer communication", "crisis communication", "media relations", "copywriting",
        "editing and proofreading", "speechwriting", "written communication",
        "interpersonal communication", "HR business partnering", "compensation benchmarking",
        "workforce planning", "one-on-one meetings", "peer feedback", "assertiveness",
        "coaching conversations", "internal communications", "debate moderation",
        "panel moderation", "diplomatic communication", "empathetic listening",
    ]
    templates = ["{}", "{} in distributed teams", "{} for first-time managers",
                 "{} with executives", "{} across cultures"]
    return combine(templates, base)


def project_and_product():
    base = [
        "agile project management", "Scrum facilitation", "Kanban flow management",
        "sprint planning", "product roadmapping", "backlog refinement", "user story writing",
        "requirements gathering", "product discovery", "user research", "usability testing",
        "wireframing", "Figma prototyping", "Jira workflow design", "release planning",
        "PRINCE2 project delivery", "critical path scheduling", "Gantt chart planning",
        "project risk registers", "go-to-market planning", "MVP scoping",
        "feature prioritisation", "product requirements documents", "programme management",
        "project portfolio management", "earned value management", "change request handling",
        "SAFe release trains", "UX design", "design sprints", "customer journey mapping",
        "project budgeting", "resource allocation planning", "milestone tracking",
        "project status reporting", "retrospective facilitation", "product launch coordination",
        "product strategy", "product vision", "OKR setting", "dependency mapping",
        "project scoping", "work breakdown structures", "project closure reviews",
        "beta programme management", "product-led growth", "agile coaching",
        "information architecture", "interaction design", "service design",
        "jobs-to-be-done interviews",
    ]
    templates = ["{}", "{} for SaaS products", "{} with Jira", "{} for hardware products",
                 "{} in large programmes"]
    return combine(templates, base)


def compliance_and_risk():
    regs = ["GDPR", "HIPAA", "SOX", "PCI DSS", "ISO 27001", "SOC 2", "CCPA", "DORA",
            "Basel III", "MiFID II", "FCPA", "NIS2", "ISO 9001", "EU AI Act", "LGPD", "FERPA"]
    regs_t = ["{} compliance", "{} audit preparation", "{} gap analysis", "{} controls testing",
              "{} policy writing", "{} readiness assessment", "{} remediation planning",
              "{} evidence collection"]
    topics = [
        "GDPR data subject requests", "anti-money laundering investigations", "KYC checks",
        "sanctions screening", "operational risk assessment", "internal audit",
        "third-party risk management", "regulatory reporting", "data retention policies",
        "business continuity planning", "export controls", "whistleblower case handling",
        "conflict of interest reviews", "privacy impact assessments",
        "enterprise risk management", "vendor due diligence", "health and safety compliance",
        "environmental compliance", "credit risk assessment", "market risk monitoring",
        "fraud investigation", "insider trading surveillance", "records management",
        "model risk management", "compliance training design", "risk appetite statements",
        "control self-assessments", "audit trail reviews", "anti-bribery controls",
        "trade surveillance", "information security governance", "data breach notification",
    ]
    topics_t = ["{}", "{} in financial services", "{} for regulated industries"]
    return combine(regs_t, regs) + combine(topics_t, topics)


def corporate_culture():
    base = [
        "diversity and inclusion", "employee engagement", "company values alignment",
        "workplace wellbeing", "psychological safety", "recognition programmes",
        "remote work culture", "team building", "ethical leadership", "culture change",
        "belonging initiatives", "employer branding", "culture surveys", "mission alignment",
        "inclusive hiring practices", "allyship", "code of conduct adoption",
        "volunteering programmes", "hybrid work norms", "trust building",
        "employee resource groups", "work-life balance", "burnout prevention",
        "inclusive language", "celebrating milestones", "servant leadership",
        "organisational values", "feedback culture", "learning culture", "innovation culture",
        "equity and inclusion", "mental health awareness", "unconscious bias awareness",
        "intergenerational collaboration", "community engagement",
        "corporate social responsibility", "sustainability culture",
        "employee experience design",
    ]
    templates = ["{}", "{} in hybrid workplaces", "{} for growing companies",
                 "{} programme design", "measuring {}", "{} after mergers"]
    return combine(templates, base)


def specialized_knowledge():
    fields = [
        "clinical trial design", "pharmacology", "structural engineering", "maritime law",
        "patent drafting", "tax law", "actuarial science", "radiology", "veterinary medicine",
        "geology", "agronomy", "aviation maintenance", "HVAC design", "welding",
        "culinary arts", "forensic accounting", "linguistics", "legal translation",
        "sign language interpretation", "archival science", "museum curation",
        "nuclear physics", "organic chemistry", "molecular biology", "genomics",
        "epidemiology", "civil engineering", "electrical wiring", "carpentry", "photography",
        "music production", "wine tasting", "industrial design", "astrophysics",
        "oceanography", "meteorology", "dental hygiene", "nursing care", "physiotherapy",
        "paediatric care", "land surveying", "mining engineering", "textile design",
        "horticulture", "forestry", "immunology", "neuroscience", "medical coding",
        "anaesthesiology", "orthopaedics", "naval architecture", "petroleum engineering",
        "acoustics", "optics", "cartography", "palaeontology", "archaeology",
        "classical music performance", "sculpture", "beekeeping", "brewing", "pastry arts",
        "semiconductor process engineering", "aerospace propulsion", "hydrology",
        "soil science", "food microbiology",
    ]
    templates = ["{}", "applied {}", "{} fundamentals", "advanced {}",
                 "{} research methods", "{} for practitioners"]
    return combine(templates, fields)


VOCABULARY = {
    "technology": technology,
    "data_and_analytics": data_and_analytics,
    "business_operations": business_operations,
    "people_and_communication": people_and_communication,
    "project_and_product": project_and_product,
    "compliance_and_risk": compliance_and_risk,
    "specialized_knowledge": specialized_knowledge,
    "corporate_culture": corporate_culture,
}

# -- Alma's duplicate key and Lucy's rules --------------------------------------


def dedupe_key(name):
    """What the simulator compares: lowercase, "&" -> "and", a trailing
    "skills" dropped, letters and digits only. Keep in step with
    simulator/skill_text.cpp."""
    words = re.findall(r"[a-z0-9]+", name.lower().replace("&", " and "))
    if len(words) > 1 and words[-1] == "skills":
        words.pop()
    return "".join(words)


def load_lucy():
    path = HERE.parent / "scripts" / "lucy.py"
    spec = importlib.util.spec_from_file_location("lucy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def capitalise(name):
    return name[0].upper() + name[1:] if name[:1].islower() else name


# -- the three kinds of record --------------------------------------------------


def split_by_share(total):
    counts = {d: int(round(total * s)) for d, s in DOMAIN_SHARE.items()}
    # Rounding drift goes to the largest domain so the total is exact.
    counts["technology"] += total - sum(counts.values())
    return counts


def clean_and_known(rng):
    clean_counts = split_by_share(CLEAN_TOTAL)
    known_counts = split_by_share(KNOWN_TOTAL)
    seen = set()
    clean, known = [], []
    for domain in sorted(VOCABULARY):
        pool = []
        for name in VOCABULARY[domain]():
            name = capitalise(name)
            key = dedupe_key(name)
            if key in seen:  # "C++ code review" and "C# code review" share a key
                continue
            seen.add(key)
            pool.append(name)
        rng.shuffle(pool)
        need = known_counts[domain] + clean_counts[domain]
        if len(pool) < need:
            sys.exit(f"make_skills: {domain} has {len(pool)} names, needs {need}")
        # The registry spells a few "and" phrases with "&", as real ones do.
        for name in pool[:known_counts[domain]]:
            if " and " in name and rng.random() < 0.3:
                name = name.replace(" and ", " & ", 1)
            known.append((domain, name))
        clean += [(domain, n) for n in pool[known_counts[domain]:need]]
    return clean, known


def variant(name, rng):
    """A near-duplicate spelling of `name` with the same dedupe key."""
    ops = ["lower", "upper", "title", "hyphen", "period", "spacing", "skills", "strip_punct"]
    if " and " in name or "&" in name:
        ops += ["ampersand"] * 3
    out = name
    for op in rng.sample(ops, k=rng.choice([1, 1, 2])):
        if op == "lower":
            out = out.lower()
        elif op == "upper":
            out = out.upper()
        elif op == "title":
            out = " ".join(w[:1].upper() + w[1:] for w in out.split(" "))
        elif op == "hyphen" and " " in out:
            spaces = [i for i, c in enumerate(out) if c == " "]
            i = rng.choice(spaces)
            out = out[:i] + "-" + out[i + 1:]
        elif op == "period":
            out = out + rng.choice([".", "!", " .", ";", "..."])
        elif op == "spacing":
            out = rng.choice(["  ", " ", "\t"]) + out.replace(" ", rng.choice(["  ", "   "]), 1)
            out += rng.choice(["", " ", "  "])
        elif op == "skills":
            out = out + rng.choice([" skills", " Skills", " skills."])
        elif op == "strip_punct":
            # "Node.js" -> "Nodejs", "CI/CD" -> "CI CD", "go-to-market" -> "go to market"
            out = re.sub(r"[.+#]", "", re.sub(r"[-/]", " ", out)) if re.search(r"[./-]", out) \
                else out.lower()
        elif op == "ampersand":
            out = out.replace(" and ", " & ") if " and " in out else out.replace("&", "and")
    return out


def duplicates(known, rng):
    out, seen = [], set(n for _, n in known)
    while len(out) < DUPLICATE_TOTAL:
        _, canonical = rng.choice(known)
        v = variant(canonical, rng)
        if v in seen or dedupe_key(v) != dedupe_key(canonical):
            continue
        seen.add(v)
        out.append((canonical, v))
    return out


def junk(rng, clean_names):
    out = []

    def take(category, make):
        made = set()
        while len(made) < JUNK_PER_CATEGORY:
            made.add(make())
        out.extend((category, s) for s in sorted(made))

    blanks = [" ", "\t", "\n", "\r", "\u00a0", "\u3000"]
    take("empty", lambda: "".join(rng.choice(blanks) for _ in range(rng.randint(0, 5))))

    symbols = "0123456789!?.,;:-_#*/()[]+=%&@ "
    take("no_letters", lambda: (rng.choice("0123456789#!?*-") +
                                "".join(rng.choice(symbols) for _ in range(rng.randint(0, 10)))))

    rows = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]

    def mash():
        kind = rng.randint(0, 4)
        row = rng.choice(rows)
        row = row if rng.random() < 0.7 else row[::-1]
        n = rng.randint(4, min(8, len(row)))
        start = rng.randint(0, len(row) - n)
        run = row[start:start + n]
        if kind == 0:
            word = run
        elif kind == 1:
            word = run[:3] * rng.randint(2, 3)
        elif kind == 2:
            word = rng.choice("asdfjklxz") * rng.randint(3, 7)
        elif kind == 3:
            word = run + " " + row[:4]
        else:
            word = run + str(rng.randint(1, 999))
        return rng.choice([word, word.upper(), capitalise(word)])

    take("keyboard_mash", mash)

    def too_long():
        parts = rng.sample(clean_names, rng.randint(3, 7))
        text = rng.choice(["I am good at ", "Experience with ", ""]) + ", ".join(parts)
        if len(text) <= 120:
            text += ", and many other things I picked up over the years at various jobs"
        return text

    take("too_long", too_long)

    slugs = ["python", "data-analysis", "skills/42", "jobs?id=7", "profile", "cv.pdf"]
    hosts = ["example.com", "example.org", "skills.example.net", "jobs.example.com"]

    def url():
        form = rng.randint(0, 4)
        host, slug = rng.choice(hosts), rng.choice(slugs)
        if form == 0:
            return f"https://{host}/{slug}"
        if form == 1:
            return f"http://www.{host}/{slug}"
        if form == 2:
            return f"www.{host}"
        if form == 3:
            return f"{host}/{slug}"
        return f"See {rng.choice(['https', 'HTTP'])}://{host}/{slug} for details"

    take("url", url)
    return out


# -- assembling and checking ----------------------------------------------------


def build():
    rng = random.Random(SEED)
    clean, known = clean_and_known(rng)
    dups = duplicates(known, rng)
    junk_items = junk(rng, [n for _, n in clean])

    records = ([("clean", d, n) for d, n in clean] +
               [("near_duplicate", "", v) for _, v in dups] +
               [("junk:" + c, "", s) for c, s in junk_items])
    rng.shuffle(records)
    keyed = [(f"s{i:04d}", kind, domain, name)
             for i, (kind, domain, name) in enumerate(records, start=1)]

    lucy = load_lucy()
    known_keys = {dedupe_key(n) for _, n in known}
    for key, kind, _, name in keyed:
        verdict = lucy.check({"key": key, "name": name})
        if kind.startswith("junk:"):
            reason = verdict["output"].get("reason")
            if verdict["outcome"] != "rejected" or reason != kind[5:]:
                sys.exit(f"make_skills: junk {name!r} ({kind}) got {verdict}")
            continue
        if verdict["outcome"] != "passed":
            sys.exit(f"make_skills: {kind} {name!r} rejected by Lucy: {verdict}")
        is_dup = dedupe_key(verdict["output"]["name"]) in known_keys
        if is_dup != (kind == "near_duplicate"):
            sys.exit(f"make_skills: {name!r} is {kind} but duplicate check says {is_dup}")

    by_domain = {d: sum(1 for dd, _ in clean if dd == d) for d in sorted(DOMAIN_SHARE)}
    junk_by = {}
    for c, _ in junk_items:
        junk_by[c] = junk_by.get(c, 0) + 1
    manifest = {
        "generator": "make_skills.py",
        "seed": SEED,
        "total": len(keyed),
        "clean": len(clean),
        "junk": len(junk_items),
        "near_duplicate": len(dups),
        "known_skills": len(known),
        "clean_by_domain": by_domain,
        "junk_by_reason": dict(sorted(junk_by.items())),
    }
    skills = "".join(json.dumps({"key": k, "name": n}) + "\n" for k, _, _, n in keyed)
    known_txt = "".join(n + "\n" for _, n in sorted(known, key=lambda x: x[1].lower()))
    files = {
        "skills.jsonl": skills,
        "known_skills.txt": known_txt,
        "manifest.json": json.dumps(manifest, indent=2) + "\n",
    }
    return files, keyed


def main(argv):
    files, keyed = build()
    if "--domains" in argv:
        for key, kind, domain, _ in keyed:
            print(f"{key}\t{kind}\t{domain}")
    if "--check" in argv:
        stale = [f for f, text in files.items()
                 if not (HERE / f).exists() or (HERE / f).read_text(encoding="utf-8") != text]
        if stale:
            print("make_skills: out of date: " + ", ".join(stale), file=sys.stderr)
            return 1
        return 0
    for f, text in files.items():
        (HERE / f).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
