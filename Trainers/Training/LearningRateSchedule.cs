namespace MlNetBn.Training;

/// <summary>How the learning rate changes from epoch to epoch.</summary>
public enum LearningRateSchedule
{
    /// <summary>The same rate every epoch, as Dive into Deep Learning trains LeNet.</summary>
    Constant,

    /// <summary>Cosine annealing from the learning rate down to 0 over the epochs (set once per epoch).</summary>
    Cosine,

    /// <summary>Multiply the rate by <c>StepDecayFactor</c> every <c>StepDecayEpochs</c> epochs.</summary>
    StepDecay,
}

/// <summary>The learning rate of an epoch under a schedule.</summary>
internal static class LearningRateSchedules
{
    /// <summary>The rate for zero-based <paramref name="epoch"/> of <paramref name="epochs"/>.</summary>
    public static double RateAt(LearningRateSchedule schedule, double baseRate, int epoch, int epochs, int stepEpochs, double stepFactor) =>
        schedule switch
        {
            LearningRateSchedule.Constant => baseRate,
            // η_e = η/2 · (1 + cos(π·e/E)): the first epoch trains at the full rate, the last near zero.
            LearningRateSchedule.Cosine => baseRate * 0.5 * (1 + Math.Cos(Math.PI * epoch / epochs)),
            LearningRateSchedule.StepDecay => baseRate * Math.Pow(stepFactor, epoch / stepEpochs),
            _ => throw new ArgumentOutOfRangeException(nameof(schedule), schedule, "Unknown learning-rate schedule."),
        };
}
