// The keyword table and the scoring over it (see domain_keywords.hpp).
//
// A term is one or more words as keyword_words() splits them ("power bi",
// "c++", "a b test*"); a trailing '*' lets the last word match as a prefix
// ("forecast*" matches "forecasting"). Each term counts once per skill.
// Weights: 3 names the domain on its own (a tool, a regulation, a field),
// 2 leans towards it, 1 is a weak hint that only breaks ties. Terms shared
// by two domains get the weight that decides the realistic reading, e.g.
// "sql" (2, analytics) loses to "sql server" (3, technology).
#include "domain_keywords.hpp"

#include "skill_text.hpp"

#include <algorithm>

namespace turing::model_sim {

namespace {

struct term_group {
  std::string_view domain;
  int weight;
  std::string_view terms; // '|'-separated
};

// clang-format off
constexpr term_group table[] = {
  // -- technology -------------------------------------------------------------
  {"technology", 3,
   "kubernetes|docker|terraform|ansible|helm|istio|nginx|haproxy|vmware|vsphere|openstack|"
   "proxmox|linux|windows server|active directory|consul|puppet|chef|podman|openshift|aws|"
   "azure|google cloud|cloudflare|envoy|python|java|golang|rust|c++|typescript|javascript|"
   "kotlin|swift|c#|scala|ruby|php|elixir|haskell|clojure|erlang|dart|lua|perl|bash|"
   "powershell|postgresql|postgres|mysql|redis|mongodb|cassandra|elasticsearch|sqlite|"
   "dynamodb|mariadb|oracle database|sql server|cockroachdb|neo4j|rabbitmq|kafka|nats|react|"
   "angular|vue|django|flask|spring boot|asp net|rails|next js|node js|express js|fastapi|"
   "svelte|graphql|grpc|rest api|websocket*|laravel|jenkins|github actions|gitlab|argo cd|"
   "prometheus|opentelemetry|datadog|circleci|bazel|cmake|git|nagios|zabbix|elk stack|tls|"
   "oauth|single sign on|sso|vpn|dns|bgp|wireshark|firewall*|penetration testing|android|ios|"
   "firmware|fpga|verilog|arduino|raspberry pi|bluetooth|device driver*|flutter|unity|"
   "unreal engine|webassembly|wasm|compiler*|microservice*|serverless|lambda|ci cd|kernel|"
   "vault|hashicorp|malware|site reliability|infrastructure as code|real time operating|"
   "distributed systems|event driven|object oriented|functional programming|test driven|"
   "continuous integration|shell scripting|api gateway|software architecture|"
   "web accessibility|memory profiling|code review|unit testing|build tooling|"
   "security hardening|high availability|backup and restore|replication setup|"
   "schema migration*|query tuning|cluster administration|devops|sre"},
  {"technology", 2,
   "zero trust|network|load balancer*|secure code|container*|secrets management|endpoint*|"
   "intrusion detection|operating system*|game development|caching|backend|frontend|"
   "programming|refactoring|debugging|concurrency|api design|component design|"
   "application development|app development|service development|pipeline setup|"
   "alerting|deployment|cluster|server*|cloud|software|integration|reverse engineering|"
   "scripting|api|apis|idiomatic|embedded|mobile|security review"},
  {"technology", 1,
   "web|upgrades|administration|troubleshooting|performance tuning|configuration*|"
   "automation|migration|migrating|scaling|routing|modules|capacity tuning|operations"},

  // -- data_and_analytics -----------------------------------------------------
  {"data_and_analytics", 3,
   "tableau|power bi|looker|qlik|metabase|google analytics|superset|excel|pandas|numpy|sas|"
   "spss|stata|matlab|jupyter|spark|dbt|airflow|snowflake|bigquery|databricks|redshift|"
   "alteryx|flink|scikit learn|sklearn|tensorflow|pytorch|xgboost|hugging face|lightgbm|"
   "keras|machine learning|deep learning|regression|time series|a b test*|cohort*|churn|"
   "segmentation|data cleaning|visualisation|visualization|etl|data warehouse|"
   "dimensional model*|statistic*|hypothesis testing|bayesian|feature engineering|"
   "anomaly detection|natural language processing|nlp|computer vision|recommendation system*|"
   "survey data|geospatial|data quality|master data|predictive|sentiment analysis|"
   "web analytics|causal inference|cluster analysis|decision tree*|text mining|marketing mix|"
   "attribution model*|data storytelling|monte carlo|principal component*|data lineage|"
   "data catalog*|descriptive statistics|big data|stream analytics|large language model*|"
   "llm|experiment design|survival analysis|data governance|model training|model evaluation|"
   "hyperparameter*|data pipeline*|data model*|data wrangling|exploratory|kpi dashboard*|"
   "data science|data scientist|data visualisation|self service analytics"},
  {"data_and_analytics", 2,
   "sql|r|forecast*|dashboard*|analytics|metric*|kpi*|inference|modelling|modeling|"
   "simulation|prediction|clustering|data engineering|warehouse design|data analysis"},
  {"data_and_analytics", 1, "data|analysis|reporting|model|models"},

  // -- business_operations ----------------------------------------------------
  {"business_operations", 3,
   "procurement|vendor management|supply chain|inventory|accounts payable|"
   "accounts receivable|invoic*|revenue|financial reporting|cash flow|payroll|expense*|"
   "order fulfilment|order fulfillment|logistics|warehouse operations|customer support|"
   "pricing|supplier*|business process*|lean six sigma|six sigma|cost reduction|facilities|"
   "office administration|fleet management|bookkeeping|month end close|demand planning|"
   "sales pipeline|account management|revenue operations|customer onboarding|"
   "purchase order*|sourcing|category management|franchise*|merchandising|call centre*|"
   "call center*|profit and loss|treasury|credit control|billing|financial planning|"
   "operating model*|shared services|freight|field service|territory|channel partner*|"
   "e commerce|ecommerce|sap|netsuite|quickbooks|erp|accounting|finance|crm"},
  {"business_operations", 2,
   "sales|budget*|contract negotiation|vendor*|retail|commerce|customer service|"
   "operations management|procure*"},
  {"business_operations", 1, "quarterly|small business*|global|optimisation|optimization|"
   "operations|process design"},

  // -- people_and_communication -----------------------------------------------
  {"people_and_communication", 3,
   "public speaking|conflict mediation|active listening|business writing|technical writing|"
   "presentation*|stakeholder communication|mentoring|mentorship|recruit*|"
   "onboarding new hires|performance review*|emotional intelligence|difficult conversation*|"
   "delegation|employee relations|talent*|succession planning|learning and development|"
   "people management|relationship building|customer communication|crisis communication|"
   "media relations|copywriting|proofreading|speechwriting|compensation*|workforce planning|"
   "one on one|peer feedback|assertive*|business partnering|team leadership|"
   "cross cultural communication|influencing|interpersonal|public relations|"
   "written communication|verbal communication|giving feedback|constructive feedback"},
  {"people_and_communication", 2,
   "negotiat*|mediation|writing|communication*|feedback|coaching|interview*|hiring|"
   "leadership|cross cultural|facilitation|workshop*|persuasive|persuasion|storytelling|"
   "career*|networking|editing|hr|conversation*|moderation|diplomatic|empathetic|listening|"
   "managers|meetings|meeting"},
  {"people_and_communication", 1, "executives|distributed teams|across cultures|teams"},

  // -- project_and_product ----------------------------------------------------
  {"project_and_product", 3,
   "agile|project management|scrum|kanban|sprint*|roadmap*|backlog*|user stor*|"
   "requirements gathering|product discovery|user research|usability|wirefram*|figma|jira|"
   "release planning|release train*|prince2|pmp|critical path|gantt|risk register*|"
   "go to market|mvp|programme management|program management|portfolio management|"
   "earned value|change request*|ux|design sprint*|customer journey|resource allocation|"
   "milestone tracking|status reporting|retrospective*|product launch|product strategy|"
   "product vision|okr*|dependency mapping|work breakdown|product led|"
   "information architecture|interaction design|service design|jobs to be done|"
   "product management|product manager|project budgeting|project delivery|"
   "product requirements|project scoping|project closure|beta programme*|beta program*"},
  {"project_and_product", 2,
   "product|products|project|projects|prioriti*|requirement*|prototyp*|milestone*|scoping|"
   "closure|beta|safe|stakeholder*|programme|program|roadmapping|delivery"},
  {"project_and_product", 1, "saas|large programmes|planning|hardware products"},

  // -- compliance_and_risk ----------------------------------------------------
  {"compliance_and_risk", 3,
   "gdpr|hipaa|sox|sarbanes oxley|pci dss|pci|iso 27001|soc 2|ccpa|dora|basel|mifid|fcpa|"
   "nis2|iso 9001|ai act|lgpd|ferpa|compliance|compliant|audit*|gap analysis|"
   "controls testing|evidence collection|data subject*|money laundering|aml|kyc|sanctions|"
   "risk management|risk assessment*|regulatory|data retention|business continuity|"
   "export control*|whistleblow*|conflict of interest|privacy|due diligence|"
   "health and safety|fraud|insider trading|records management|bribery|anti bribery|"
   "breach notification|data breach|trade surveillance|risk appetite|information security|"
   "internal control*|operational risk|credit risk|market risk|model risk|third party risk"},
  {"compliance_and_risk", 2,
   "risk|risks|control*|polic*|regulated|regulation*|readiness assessment|remediation|"
   "governance|surveillance|self assessment*|legal|retention|screening|investigation*|"
   "enforcement|ethics"},
  {"compliance_and_risk", 1, "financial services|law|act|standards"},

  // -- corporate_culture ------------------------------------------------------
  {"corporate_culture", 3,
   "diversity|inclusion|inclusive|company values|wellbeing|well being|psychological safety|"
   "recognition|culture|team building|ethical leadership|belonging|employer brand*|allyship|"
   "code of conduct|volunteer*|hybrid work|employee resource group*|work life balance|"
   "burnout|mental health|celebrating milestones|servant leadership|organisational values|"
   "organizational values|intergenerational|corporate social responsibility|csr|"
   "employee experience|employee engagement|mission alignment|values alignment|"
   "unconscious bias|community engagement|remote work"},
  {"corporate_culture", 2,
   "engagement|values|mission|trust|bias|celebrat*|equity|community|sustainability|morale|"
   "rituals|workplace*"},
  {"corporate_culture", 1, "hybrid workplaces|growing companies|mergers|awareness|measuring"},

  // -- specialized_knowledge --------------------------------------------------
  {"specialized_knowledge", 3,
   "clinical|pharmacolog*|pharmaceutical*|structural engineering|maritime|patent*|tax law|"
   "actuarial|radiolog*|veterinary|geolog*|agronom*|aviation|hvac|welding|culinary|"
   "forensic*|linguistic*|translation|sign language|archiv*|museum|nuclear|physics|"
   "chemistry|biology|genomic*|epidemiolog*|civil engineering|electrical|carpentry|"
   "photograph*|music|wine|sommelier|industrial design|astrophysics|astronomy|oceanograph*|"
   "meteorolog*|dental|dentistry|nursing|physiotherap*|paediatric*|pediatric*|surveying|"
   "textile*|horticultur*|forestry|immunolog*|neuroscience|medical|medicine|anaesthesi*|"
   "anesthesi*|orthopaedic*|orthopedic*|naval|petroleum|acoustic*|optics|cartograph*|"
   "palaeontolog*|paleontolog*|archaeolog*|sculpture|beekeeping|brewing|pastry|"
   "semiconductor*|aerospace|propulsion|hydrolog*|soil|microbiolog*|mining engineering|"
   "interpretation|curation|plumbing|masonry|midwifery|surgery|surgical|forensic accounting"},
  {"specialized_knowledge", 2, "mining|trial*|wiring|classical|tax|law|research methods"},
  {"specialized_knowledge", 1, "engineering|practitioners"},
};
// clang-format on

// The fixed order for equal scores (see rank_domains).
constexpr std::array<std::string_view, 8> tie_order = {
    "specialized_knowledge",    "technology",          "data_and_analytics",  "business_operations",
    "people_and_communication", "project_and_product", "compliance_and_risk", "corporate_culture",
};

struct term {
  std::string_view domain;
  int weight;
  std::string_view text; // as written in the table, for `matched`
  std::vector<std::string> words;
  bool prefix; // the last word matches as a prefix
};

std::vector<term> build_terms() {
  std::vector<term> out;
  for (const auto& group : table) {
    std::string_view rest = group.terms;
    while (!rest.empty()) {
      auto bar = rest.find('|');
      auto text = rest.substr(0, bar);
      rest = bar == std::string_view::npos ? std::string_view{} : rest.substr(bar + 1);
      bool prefix = !text.empty() && text.back() == '*';
      auto words = keyword_words(prefix ? text.substr(0, text.size() - 1) : text);
      if (!words.empty())
        out.push_back(term{group.domain, group.weight, text, std::move(words), prefix});
    }
  }
  return out;
}

const std::vector<term>& terms() {
  static const std::vector<term> all = build_terms();
  return all;
}

bool word_matches(const std::string& word, const std::string& want, bool prefix) {
  if (prefix)
    return word.compare(0, want.size(), want) == 0;
  return word == want;
}

bool contains(const std::vector<std::string>& words, const term& t) {
  auto n = t.words.size();
  if (words.size() < n)
    return false;
  for (std::size_t i = 0; i + n <= words.size(); ++i) {
    bool ok = true;
    for (std::size_t j = 0; ok && j < n; ++j)
      ok = word_matches(words[i + j], t.words[j], t.prefix && j + 1 == n);
    if (ok)
      return true;
  }
  return false;
}

std::size_t tie_rank(std::string_view domain) {
  return static_cast<std::size_t>(std::find(tie_order.begin(), tie_order.end(), domain) -
                                  tie_order.begin());
}

} // namespace

bool is_domain(std::string_view name) {
  return std::find(domain_names.begin(), domain_names.end(), name) != domain_names.end();
}

std::vector<domain_score> rank_domains(std::string_view skill) {
  std::vector<domain_score> scores;
  for (auto d : tie_order)
    scores.push_back(domain_score{d, 0, {}});
  auto words = keyword_words(skill);
  for (const auto& t : terms()) {
    if (!contains(words, t))
      continue;
    auto& s = scores[tie_rank(t.domain)];
    s.score += t.weight;
    s.matched.push_back(t.text);
  }
  std::stable_sort(scores.begin(), scores.end(),
                   [](const domain_score& x, const domain_score& y) { return x.score > y.score; });
  return scores;
}

std::string_view confusable_neighbour(std::string_view domain) {
  if (domain == "technology")
    return "data_and_analytics";
  if (domain == "data_and_analytics")
    return "technology";
  if (domain == "business_operations")
    return "project_and_product";
  if (domain == "project_and_product")
    return "business_operations";
  if (domain == "compliance_and_risk")
    return "business_operations";
  if (domain == "people_and_communication")
    return "corporate_culture";
  if (domain == "corporate_culture")
    return "people_and_communication";
  return "technology"; // specialized_knowledge and anything unknown
}

std::size_t keyword_count() {
  return terms().size();
}

} // namespace turing::model_sim
