//! Control requests from the API, and the snapshot its read-only endpoints are built from.
use super::Daemon;
use crate::control::{
    ApiError, ApplyBody, CheckpointHealth, Envelope, Reply, Request, Snapshot, TaskJson,
};
use crate::precheck;
use std::collections::HashSet;
use std::time::Instant;
use supervisor_core::{ConfigErrors, parse_task};

impl Daemon {
    pub(super) fn on_control(&mut self, env: Envelope) {
        let reply = self.answer(env.request);
        // The requester may have given up (timeout, closed connection): nothing to do then.
        let _ = env.reply.send(reply);
    }

    fn answer(&mut self, request: Request) -> Reply {
        let now = Instant::now();
        let result = match request {
            Request::Snapshot => return Reply::Snapshot(Box::new(self.snapshot(now))),
            Request::GetTask(name) => {
                return self
                    .task_json(&name, now)
                    .map_or_else(Reply::Error, |t| Reply::Task(Box::new(t)));
            }
            Request::Start(name) => self.core.start(now, &name),
            Request::Stop(name) => self.core.stop(now, &name),
            Request::Restart(name) => self.core.restart(now, &name),
            Request::Remove(name) => self.core.remove(now, &name),
            Request::Add(value) => return self.add(now, &value),
            Request::Apply { body, dry_run } => return self.apply(now, body, dry_run),
            Request::CheckTargets => return Reply::CheckTargets(self.core.check_targets()),
            Request::Fatal(error) => {
                tracing::error!("{error}: stopping every task");
                self.fatal.get_or_insert(error);
                self.core.shutdown(now, false);
                return Reply::Done;
            }
            Request::Checked {
                task,
                generation,
                kind,
                ok,
                detail,
            } => {
                self.core.handle(
                    now,
                    supervisor_core::Input::Checked {
                        task,
                        generation,
                        kind,
                        ok,
                        detail,
                    },
                );
                return Reply::Done;
            }
        };
        match result {
            Ok(()) => Reply::Done,
            Err(e) => Reply::Error(e.into()),
        }
    }

    /// `POST /tasks`: validated like the task list, the file system checks included.
    fn add(&mut self, now: Instant, value: &serde_json::Value) -> Reply {
        let taken: HashSet<String> = self
            .core
            .views()
            .into_iter()
            .map(|v| v.spec.name.clone())
            .collect();
        let index = self.core.task_count() + 1;
        let spec = match parse_task(value, index, &taken, self.core.port_range()) {
            Ok(s) => s,
            Err(e) => return Reply::Error(ApiError::from(e)),
        };
        let problems = precheck::check_one(&spec, index);
        if !problems.is_empty() {
            return Reply::Error(ApiError::from(ConfigErrors(problems)));
        }
        let name = spec.name.clone();
        tracing::info!(task = %name, argv = ?spec.command, "task added through the API");
        match self.core.add_task(now, spec) {
            Ok(_) => self
                .task_json(&name, now)
                .map_or_else(Reply::Error, |t| Reply::Added(Box::new(t))),
            Err(e) => Reply::Error(e.into()),
        }
    }

    /// `PUT /tasks` and `PUT /tasks/{name}`: validated like the task list (file system checks
    /// included), then planned, then (unless a dry run) applied.
    fn apply(&mut self, now: Instant, body: ApplyBody, dry_run: bool) -> Reply {
        let ports = self.core.port_range();
        let (specs, whole) = match body {
            ApplyBody::Cluster(tasks) => return self.apply_cluster(now, tasks),
            ApplyBody::Checked(specs) => return self.apply_checked(now, specs, true, dry_run),
            ApplyBody::One { name, mut task } => {
                if let Some(obj) = task.as_object_mut() {
                    match obj.get("name") {
                        None => {
                            obj.insert("name".into(), serde_json::Value::String(name.clone()));
                        }
                        Some(n) if n.as_str() == Some(name.as_str()) => {}
                        Some(n) => {
                            return Reply::Error(ApiError::new(
                                400,
                                format!(
                                    "field \"name\": {n} differs from the name in the path, {name:?}: leave it out or make them equal"
                                ),
                            ));
                        }
                    }
                }
                match parse_task(&task, 1, &HashSet::new(), ports) {
                    Ok(s) => (vec![s], false),
                    Err(e) => return Reply::Error(ApiError::from(e)),
                }
            }
        };
        let problems = precheck::check(&specs, 1);
        if !problems.is_empty() {
            return Reply::Error(ApiError::from(ConfigErrors(problems)));
        }
        self.apply_checked(now, specs, whole, dry_run)
    }

    /// Plans (and unless `dry_run` applies) a validated set.
    fn apply_checked(
        &mut self,
        now: Instant,
        specs: Vec<supervisor_core::TaskSpec>,
        whole: bool,
        dry_run: bool,
    ) -> Reply {
        let planned = if dry_run {
            self.core.plan(&specs, whole)
        } else {
            self.core.apply(now, specs, whole)
        };
        let took = now.elapsed();
        match planned {
            Ok(plan) => {
                if !dry_run && !plan.is_noop() {
                    tracing::info!(
                        added = ?plan.added,
                        removed = ?plan.removed,
                        replaced = ?plan.replaced,
                        unchanged = plan.unchanged.len(),
                        revision = plan.revision,
                        loop_ms = format!("{:.3}", took.as_secs_f64() * 1e3),
                        "task set applied"
                    );
                }
                Reply::Applied(plan)
            }
            Err(e) => Reply::Error(e.into()),
        }
    }

    /// Cluster mode: converge on the assigned set, leaving node-local tasks alone. A task
    /// invalid here (a program missing on this machine, a bad field) is refused on its own and
    /// reported back; it never holds up the rest of the node's work.
    fn apply_cluster(&mut self, now: Instant, tasks: Vec<serde_json::Value>) -> Reply {
        let ports = self.core.port_range();
        let mut specs = Vec::with_capacity(tasks.len());
        let mut refused = std::collections::BTreeMap::new();
        for (i, t) in tasks.iter().enumerate() {
            let name = t
                .get("name")
                .and_then(serde_json::Value::as_str)
                .map_or_else(|| format!("#{}", i + 1), str::to_string);
            let problems = match parse_task(t, i + 1, &HashSet::new(), ports) {
                Ok(s) => {
                    let p = precheck::check_one(&s, i + 1);
                    if p.is_empty() {
                        specs.push(s);
                        continue;
                    }
                    p
                }
                Err(e) => e.0,
            };
            let why = ConfigErrors(problems).to_string();
            tracing::warn!(task = %name, error = %why.trim(), "assigned task refused on this node");
            refused.insert(name, why.trim().to_string());
        }
        // A refused task that runs (an older version) is neither replaced nor removed.
        let wanted: std::collections::BTreeSet<String> = specs
            .iter()
            .map(|s| s.name.clone())
            .chain(refused.keys().cloned())
            .collect();
        self.cluster_refused = refused;
        let gone: Vec<String> = self.cluster_tasks.difference(&wanted).cloned().collect();
        let mut plan = match self.core.apply(now, specs, false) {
            Ok(p) => p,
            Err(e) => return Reply::Error(e.into()),
        };
        for name in gone {
            if self.core.task_id(&name).is_some() && self.core.remove(now, &name).is_ok() {
                plan.removed.push(name);
            }
        }
        self.cluster_tasks = wanted;
        plan.revision = self.core.revision();
        Reply::Applied(plan)
    }

    fn task_json(&self, name: &str, now: Instant) -> Result<TaskJson, ApiError> {
        let id = self
            .core
            .task_id(name)
            .ok_or_else(|| ApiError::new(404, format!("no task named {name:?}")))?;
        let v = self
            .core
            .view(id)
            .ok_or_else(|| ApiError::new(404, format!("no task named {name:?}")))?;
        let mut t = TaskJson::from_view(&v, now, &self.clock);
        t.usage_source = self.usage_source(&v);
        Ok(t)
    }

    /// Where a running instance's usage is read; `None` for a task without a live leader.
    fn usage_source(&self, v: &supervisor_core::TaskView) -> Option<crate::usage::Source> {
        let pid = v.pid?;
        Some(self.tracker.usage_source(pid, v.generation))
    }

    /// The state the read-only requests need; the API thread does the rest.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let views = self.core.views();
        let usage = views.iter().map(|v| self.usage_source(v)).collect();
        Snapshot {
            views,
            usage,
            revision: self.core.revision(),
            now,
            clock: self.clock,
            started: self.started,
            instance: self.identity.instance.clone(),
            shutting_down: self.core.is_shutting_down(),
            recovering: self.core.recovering(),
            tracking: self.tracker.mode().clone(),
            checkpoint: CheckpointHealth {
                enabled: self.dump.is_some(),
                path: self.dump.as_ref().map(|d| d.path.display().to_string()),
                last_age_secs: self
                    .last_checkpoint_ok
                    .map(|t| now.saturating_duration_since(t).as_secs_f64()),
                last_error: self.last_checkpoint_error.clone(),
            },
            refused: self
                .cluster_refused
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}
