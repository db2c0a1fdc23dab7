//! The engine: turns a [`PolicyRequest`] into Cedar entities and a request,
//! evaluates it, explains the answer, and caches it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Mutex;

use cedar_policy::{
    AuthorizationError, Authorizer, Context, Effect, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, PolicySet, Request, RestrictedExpression, Schema,
};

use super::load::{Loaded, PolicyLoadError, load, schema};
use super::{DEFAULT_DENY, Decision, PolicyAction, PolicyConfig, PolicyRequest, Role};

/// Entity type names, parsed once.
struct Types {
    user: EntityTypeName,
    group: EntityTypeName,
    role: EntityTypeName,
    workspace: EntityTypeName,
    document: EntityTypeName,
    action: EntityTypeName,
}

impl Types {
    fn new() -> Self {
        let parse = |name: &str| EntityTypeName::from_str(name).expect("valid type name");
        Self {
            user: parse("User"),
            group: parse("Group"),
            role: parse("Role"),
            workspace: parse("Workspace"),
            document: parse("Document"),
            action: parse("Action"),
        }
    }

    fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }
}

/// Local time as policies see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct LocalTime {
    weekday: i8,
    hour: i8,
    minute: i8,
}

/// Everything a decision depends on: the cache key. The time is reduced to
/// what the context exposes (weekday, hour, minute), so an entry is exact.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    principal: String,
    anonymous: bool,
    groups: BTreeSet<String>,
    role: Option<Role>,
    action: PolicyAction,
    workspace: String,
    document: Option<String>,
    labels: BTreeSet<String>,
    time: LocalTime,
    approvals: usize,
    source_ip: Option<IpAddr>,
    granted_role: Option<Role>,
}

/// A bounded map of recent decisions. Cleared whole when full: simple,
/// and a full cache refills within a second at the rates that matter.
struct DecisionCache {
    capacity: usize,
    /// A std mutex: held for one map operation, never across an await.
    map: Mutex<HashMap<CacheKey, Decision>>,
}

impl DecisionCache {
    fn get(&self, key: &CacheKey) -> Option<Decision> {
        if self.capacity == 0 {
            return None;
        }
        self.map.lock().expect("cache poisoned").get(key).cloned()
    }

    fn put(&self, key: CacheKey, decision: Decision) {
        if self.capacity == 0 {
            return;
        }
        let mut map = self.map.lock().expect("cache poisoned");
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(key, decision);
    }
}

/// Loaded, validated policies, ready to decide.
pub struct PolicyEngine {
    policies: PolicySet,
    order: HashMap<String, usize>,
    reasons: HashMap<String, String>,
    effects: HashMap<String, Effect>,
    time_zone: jiff::tz::TimeZone,
    authorizer: Authorizer,
    types: Types,
    cache: DecisionCache,
    schema: Schema,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("policies", &self.order.len())
            .field("time_zone", &self.time_zone.iana_name())
            .finish_non_exhaustive()
    }
}

impl PolicyEngine {
    /// Loads the built-in policies and the `.cedar` files of
    /// `config.dir`, validating all of them against the schema. Blocking
    /// file I/O: call it at start-up or from `spawn_blocking`.
    pub fn load(config: &PolicyConfig) -> Result<Self, PolicyLoadError> {
        let time_zone =
            jiff::tz::TimeZone::get(&config.time_zone).map_err(|e| PolicyLoadError::TimeZone {
                name: config.time_zone.clone(),
                reason: e.to_string(),
            })?;
        let schema = schema()?;
        let Loaded {
            set,
            order,
            reasons,
            effects,
        } = load(config, &schema)?;
        Ok(Self {
            policies: set,
            order,
            reasons,
            effects,
            time_zone,
            authorizer: Authorizer::new(),
            types: Types::new(),
            cache: DecisionCache {
                capacity: config.cache_entries,
                map: Mutex::new(HashMap::new()),
            },
            schema,
        })
    }

    /// The ids of every loaded policy, in load order.
    pub fn policy_ids(&self) -> Vec<String> {
        let mut ids: Vec<_> = self.order.iter().collect();
        ids.sort_by_key(|(_, order)| **order);
        ids.into_iter().map(|(id, _)| id.clone()).collect()
    }

    /// Decides `request`. Never fails: anything that prevents a decision
    /// (a forbid policy that cannot be evaluated, say) denies, naming the
    /// policy.
    pub fn decide(&self, request: &PolicyRequest) -> Decision {
        let time = self.local_time(request.context.at_ms);
        let key = CacheKey {
            principal: request.principal.id.clone(),
            anonymous: request.principal.anonymous,
            groups: request.principal.groups.clone(),
            role: request.principal.role,
            action: request.action,
            workspace: request.resource.workspace.clone(),
            document: request.resource.document.clone(),
            labels: request.resource.labels.clone(),
            time,
            approvals: request.context.admin_approvers.len(),
            source_ip: request.context.source_ip,
            granted_role: request.context.granted_role,
        };
        if let Some(decision) = self.cache.get(&key) {
            return decision;
        }
        let decision = match self.cedar_request(request, time) {
            Ok((cedar, entities)) => self.explain(
                request,
                &self
                    .authorizer
                    .is_authorized(&cedar, &self.policies, &entities),
            ),
            Err(reason) => Decision {
                allowed: false,
                policy_id: "policy-engine".into(),
                reason: format!("the request could not be evaluated: {reason}"),
            },
        };
        self.cache.put(key, decision.clone());
        decision
    }

    fn local_time(&self, at_ms: u64) -> LocalTime {
        let ms = i64::try_from(at_ms).unwrap_or(i64::MAX);
        let ts = jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::MAX);
        let zoned = ts.to_zoned(self.time_zone.clone());
        LocalTime {
            weekday: zoned.weekday().to_monday_one_offset(),
            hour: zoned.hour(),
            minute: zoned.minute(),
        }
    }

    /// The Cedar request and the entities it refers to.
    fn cedar_request(
        &self,
        request: &PolicyRequest,
        time: LocalTime,
    ) -> Result<(Request, Entities), String> {
        let t = &self.types;
        let ws = &request.resource.workspace;
        let role_uid = |role: Role| Types::uid(&t.role, &format!("{ws}/{}", role.as_str()));
        let mut entities = Vec::with_capacity(10);
        // The role chain: owner in admin in editor in commenter in viewer.
        for pair in Role::ALL.windows(2) {
            let parents = HashSet::from([role_uid(pair[0])]);
            entities.push(Entity::new_no_attrs(role_uid(pair[1]), parents));
        }
        entities.push(Entity::new_no_attrs(role_uid(Role::Viewer), HashSet::new()));
        let mut parents: HashSet<EntityUid> = request
            .principal
            .groups
            .iter()
            .map(|g| Types::uid(&t.group, g))
            .collect();
        for group in &parents {
            entities.push(Entity::new_no_attrs(group.clone(), HashSet::new()));
        }
        if let Some(role) = request.principal.role
            && !request.principal.anonymous
        {
            parents.insert(role_uid(role));
        }
        let principal = Types::uid(&t.user, &request.principal.id);
        let attrs = HashMap::from([(
            "anonymous".to_owned(),
            RestrictedExpression::new_bool(request.principal.anonymous),
        )]);
        entities.push(Entity::new(principal.clone(), attrs, parents).map_err(|e| e.to_string())?);
        let roles = RestrictedExpression::new_record(Role::ALL.map(|role| {
            (
                role.as_str().to_owned(),
                RestrictedExpression::new_entity_uid(role_uid(role)),
            )
        }))
        .map_err(|e| e.to_string())?;
        let labels = RestrictedExpression::new_set(
            request
                .resource
                .labels
                .iter()
                .map(|l| RestrictedExpression::new_string(l.clone())),
        );
        let workspace = Types::uid(&t.workspace, ws);
        let ws_attrs = HashMap::from([
            ("labels".to_owned(), labels.clone()),
            ("roles".to_owned(), roles.clone()),
        ]);
        entities.push(
            Entity::new(workspace.clone(), ws_attrs, HashSet::new()).map_err(|e| e.to_string())?,
        );
        let resource = match &request.resource.document {
            Some(doc) => {
                let uid = Types::uid(&t.document, doc);
                let attrs = HashMap::from([
                    ("labels".to_owned(), labels),
                    ("roles".to_owned(), roles),
                    (
                        "workspace".to_owned(),
                        RestrictedExpression::new_entity_uid(workspace.clone()),
                    ),
                ]);
                entities.push(
                    Entity::new(uid.clone(), attrs, HashSet::from([workspace]))
                        .map_err(|e| e.to_string())?,
                );
                uid
            }
            None => workspace,
        };
        let ctx = &request.context;
        let time_record = RestrictedExpression::new_record([
            (
                "hour".to_owned(),
                RestrictedExpression::new_long(time.hour.into()),
            ),
            (
                "minute".to_owned(),
                RestrictedExpression::new_long(time.minute.into()),
            ),
            (
                "weekday".to_owned(),
                RestrictedExpression::new_long(time.weekday.into()),
            ),
        ])
        .map_err(|e| e.to_string())?;
        let mut pairs = vec![
            ("time".to_owned(), time_record),
            (
                "admin_approvals".to_owned(),
                RestrictedExpression::new_long(
                    i64::try_from(ctx.admin_approvers.len()).unwrap_or(i64::MAX),
                ),
            ),
        ];
        if let Some(ip) = ctx.source_ip {
            pairs.push((
                "source_ip".to_owned(),
                RestrictedExpression::new_ip(ip.to_string()),
            ));
        }
        if let Some(role) = ctx.granted_role {
            pairs.push((
                "granted_role_rank".to_owned(),
                RestrictedExpression::new_long(role.rank()),
            ));
        }
        let context = Context::from_pairs(pairs).map_err(|e| e.to_string())?;
        let action = Types::uid(&t.action, request.action.as_str());
        let cedar =
            Request::new(principal, action, resource, context, None).map_err(|e| e.to_string())?;
        // No schema here: the entities are ours and checked by a test; the
        // policies were validated against the schema at load.
        let entities = Entities::from_entities(entities, None).map_err(|e| e.to_string())?;
        Ok((cedar, entities))
    }

    /// The earliest-loaded of `ids`.
    fn first<'a>(&self, ids: impl Iterator<Item = &'a str>) -> Option<String> {
        ids.min_by_key(|id| self.order.get(*id).copied().unwrap_or(usize::MAX))
            .map(str::to_owned)
    }

    fn reason_of(&self, id: &str, fallback: &str) -> String {
        self.reasons
            .get(id)
            .cloned()
            .unwrap_or_else(|| fallback.to_owned())
    }

    fn explain(&self, request: &PolicyRequest, response: &cedar_policy::Response) -> Decision {
        let diagnostics = response.diagnostics();
        // A forbid that could not be evaluated might have applied: fail
        // closed and name it. A permit that failed simply grants nothing.
        let failed_forbid = diagnostics.errors().find_map(|e| {
            let AuthorizationError::PolicyEvaluationError(e) = e;
            let id = e.policy_id().to_string();
            (self.effects.get(&id) == Some(&Effect::Forbid)).then(|| (id, e.inner().to_string()))
        });
        if let Some((policy_id, error)) = failed_forbid {
            return Decision {
                allowed: false,
                policy_id,
                reason: format!("the policy could not be evaluated: {error}"),
            };
        }
        for error in diagnostics.errors() {
            tracing::warn!(%error, "a permit policy could not be evaluated");
        }
        let determining = self.first(diagnostics.reason().map(|id| id.as_ref()));
        match (response.decision(), determining) {
            (cedar_policy::Decision::Allow, Some(id)) => Decision {
                allowed: true,
                reason: self.reason_of(&id, "permitted"),
                policy_id: id,
            },
            (cedar_policy::Decision::Deny, Some(id)) => Decision {
                allowed: false,
                reason: self.reason_of(&id, "forbidden"),
                policy_id: id,
            },
            (_, None) => Decision {
                allowed: false,
                policy_id: DEFAULT_DENY.into(),
                reason: match request
                    .principal
                    .role
                    .filter(|_| !request.principal.anonymous)
                {
                    None => format!(
                        "{} has no role on workspace {:?}",
                        if request.principal.anonymous {
                            "an anonymous connection"
                        } else {
                            "the user"
                        },
                        request.resource.workspace
                    ),
                    Some(role) => format!(
                        "no policy permits {:?} for the {role} role",
                        request.action.as_str()
                    ),
                },
            },
        }
    }

    /// Checks the entities built for `request` against the schema (tests).
    #[doc(hidden)]
    pub fn check_against_schema(&self, request: &PolicyRequest) -> Result<(), String> {
        let time = self.local_time(request.context.at_ms);
        let (cedar, entities) = self.cedar_request(request, time)?;
        let entities: Vec<Entity> = entities.iter().cloned().collect();
        Entities::from_entities(entities, Some(&self.schema)).map_err(|e| e.to_string())?;
        Request::new(
            cedar.principal().cloned().ok_or("no principal")?,
            cedar.action().cloned().ok_or("no action")?,
            cedar.resource().cloned().ok_or("no resource")?,
            cedar.context().cloned().ok_or("no context")?,
            Some(&self.schema),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    }
}
