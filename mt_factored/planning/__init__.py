"""MPPI with an agent axis: centralized (1 agent x A dims) or per joint (N agents x G dims)."""

from mt_factored.planning.base import MPPIConfig, PlanningModel
from mt_factored.planning.expert_adapter import ExpertPlanningModel
from mt_factored.planning.mppi import MPPIPlanner, PlanStats

__all__ = ["ExpertPlanningModel", "MPPIConfig", "MPPIPlanner", "PlanStats", "PlanningModel"]
