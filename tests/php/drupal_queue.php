<?php
// Drives examples/drupal/src/Queue/GearmanQueue.php as Drupal would, with Drupal's
// interfaces from drupal_stub.php: php drupal_queue.php HOST:PORT QUEUE JSON
// createItem(json_decode(JSON)), with its "account" entry made a stdClass object
// (as Drupal hands over a loaded account); prints the handle, or FALSE.
require __DIR__ . '/drupal_stub.php';
require __DIR__ . '/../../examples/drupal/src/Queue/GearmanQueue.php';
require __DIR__ . '/../../examples/drupal/src/Queue/GearmanQueueFactory.php';

\Drupal\Core\Site\Settings::$values['gearman_servers'] = $argv[1];
$factory = new \Drupal\gearctl_example\Queue\GearmanQueueFactory();
$queue = $factory->get($argv[2]);
assert($queue instanceof \Drupal\Core\Queue\QueueInterface);
$data = json_decode($argv[3], TRUE, 512, JSON_THROW_ON_ERROR);
if (isset($data['account'])) {
  $data['account'] = (object) $data['account'];
}
$handle = $queue->createItem($data);
echo $handle === FALSE ? 'FALSE' : $handle, "\n";
exit($handle === FALSE ? 1 : 0);
